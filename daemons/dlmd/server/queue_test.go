package server

import "testing"

// TestQueueWaitRoom: waitRoom lets a producer through while the queue
// holds at most the bound, holds it while it holds more, and lets it go
// once the sender took the items or the queue closed.
func TestQueueWaitRoom(t *testing.T) {
	done := make(chan struct{})
	close(done) // waitRoom returns false at once instead of waiting
	tests := []struct {
		name   string
		pushed int
		take   bool
		close  bool
		want   bool
	}{
		{"empty", 0, false, false, true},
		{"at the bound", 2, false, false, true},
		{"over the bound", 3, false, false, false},
		{"over, then taken", 3, true, false, true},
		{"over, then closed", 3, false, true, true},
	}
	for _, tt := range tests {
		q := newQueue[int]()
		for i := range tt.pushed {
			q.push(i)
		}
		if tt.take {
			if items, ok := q.take(nil); !ok || len(items) != tt.pushed {
				t.Fatalf("%s: take: %v, %v", tt.name, items, ok)
			}
		}
		if tt.close {
			q.close()
		}
		if got := q.waitRoom(2, done); got != tt.want {
			t.Errorf("%s: waitRoom = %v, want %v", tt.name, got, tt.want)
		}
	}
}
