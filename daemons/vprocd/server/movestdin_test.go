package server

import (
	"bytes"
	"testing"

	"github.com/openssi/openssi/daemons/vprocd/runner"
)

func TestStdinLog(t *testing.T) {
	join := func(bs [][]byte) string { return string(bytes.Join(bs, nil)) }
	var l stdinLog
	for _, s := range []string{"abc", "", "defg", "hi"} {
		l.add([]byte(s))
	}
	for _, tc := range []struct {
		taken int64
		rest  string
		lost  int64
	}{
		{0, "abcdefghi", 0},
		{3, "defghi", 0},
		{5, "fghi", 0},
		{9, "", 0},
		{12, "", 0},
	} {
		c := l
		c.chunks = append([][]byte(nil), l.chunks...)
		rest, lost := c.from(tc.taken)
		if join(rest) != tc.rest || lost != tc.lost {
			t.Errorf("from(%d) = %q, %d; want %q, %d", tc.taken, join(rest), lost, tc.rest, tc.lost)
		}
		if c.sent != int64(len(tc.rest)) || c.first != 0 {
			t.Errorf("from(%d): the new stream has sent %d from %d", tc.taken, c.sent, c.first)
		}
	}
	// Past maxStdinLog the oldest chunks go: what was taken before them
	// is lost.
	var big stdinLog
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for range 6 {
		big.add(chunk)
	}
	if big.size > maxStdinLog || big.first != 2<<20 || big.sent != 6<<20 {
		t.Fatalf("kept %d from %d of %d", big.size, big.first, big.sent)
	}
	rest, lost := big.from(1 << 20)
	if lost != 1<<20 || len(join(rest)) != 4<<20 {
		t.Errorf("from(1 MiB) = %d bytes, lost %d", len(join(rest)), lost)
	}
}

// TestHoldBounded: while a program is checkpointed, its stdin is held
// back up to maxHeld; a chunk past that waits for the move's end
// (pushing back on the caller's stream) instead of being kept: after a
// release it goes through (hold says false: write it), after the
// program's end it is dropped (true).
func TestHoldBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		end   func(m *migStdin)
		after bool
	}{
		{"released", func(m *migStdin) { m.release(&runner.Proc{Stdin: discard{}}) }, false},
		{"the program ended", func(m *migStdin) { m.ended() }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m migStdin
			m.startHolding()
			chunk := make([]byte, maxHeld/4)
			for i := range 4 {
				if !m.hold(chunk) {
					t.Fatalf("chunk %d not held", i)
				}
			}
			got := make(chan bool, 1)
			go func() { got <- m.hold([]byte("past the bound")) }()
			tc.end(&m)
			if r := <-got; r != tc.after {
				t.Fatalf("hold past the bound = %v, want %v (it must wait for the move's end)", r, tc.after)
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			if tc.after == false && (len(m.held) != 0 || m.heldBytes != 0) {
				t.Fatalf("after the release %d chunks, %d bytes still held", len(m.held), m.heldBytes)
			}
		})
	}
}

// discard is a program's stdin that takes everything.
type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) Close() error                { return nil }
