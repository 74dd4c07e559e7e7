package node

import (
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/dlmdspec"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// TestMaxLease: the cap on what peers say is the longest setting dlmdspec
// allows.
func TestMaxLease(t *testing.T) {
	if MaxLease != dlmdspec.MaxLease {
		t.Errorf("node.MaxLease = %v, dlmdspec.MaxLease = %v", MaxLease, dlmdspec.MaxLease)
	}
}

// TestLeaseInUse: the lease a node fences by is the largest setting of
// itself and the members it heard from; what peers say is capped, and a
// non-member's or an unknown (zero) value does not count.
func TestLeaseInUse(t *testing.T) {
	type heard struct {
		node           uint32
		setting, inUse time.Duration
	}
	tests := []struct {
		name  string
		heard []heard
		want  time.Duration
	}{
		{"alone", nil, 300 * time.Millisecond},
		{"shorter peers", []heard{{2, 200 * time.Millisecond, 0}, {3, 250 * time.Millisecond, 0}}, 300 * time.Millisecond},
		{"a longer member", []heard{{2, 200 * time.Millisecond, 0}, {3, 3 * time.Second, 3 * time.Second}}, 3 * time.Second},
		{"the latest word counts", []heard{{3, 3 * time.Second, 0}, {3, time.Second, 0}}, time.Second},
		{"unknown ignored", []heard{{3, 3 * time.Second, 0}, {3, 0, 0}}, 3 * time.Second},
		{"a peer's in use is not a setting", []heard{{2, 300 * time.Millisecond, 5 * time.Second}}, 300 * time.Millisecond},
		{"not a member", []heard{{7, 5 * time.Second, 0}}, 300 * time.Millisecond},
		{"capped", []heard{{2, 1000000 * time.Hour, 0}}, MaxLease},
		{"negative", []heard{{2, -time.Hour, -time.Hour}}, 300 * time.Millisecond},
		{"itself", []heard{{1, 5 * time.Second, 0}}, 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := New(Config{Node: 1, Incarnation: 1, Lease: 300 * time.Millisecond})
			n.Start(netT0, 1, []uint32{1, 2, 3})
			for _, h := range tt.heard {
				n.HeardLease(h.node, h.setting, h.inUse)
			}
			if setting, inUse := n.Lease(); setting != 300*time.Millisecond || inUse != tt.want {
				t.Errorf("Lease() = %v, %v; want 300ms, %v", setting, inUse, tt.want)
			}
		})
	}
}

// TestLostLeaseFromPongAges: a survivor that never heard the lost node
// waits for the lease another member reports it used (in the pong ages of
// a marker), from the latest time a member answered it.
func TestLostLeaseFromPongAges(t *testing.T) {
	n := New(Config{Node: 1, Incarnation: 1, Lease: 300 * time.Millisecond, Tick: 20 * time.Millisecond})
	n.Start(netT0, 1, []uint32{1, 2, 3})
	plan := directory.Plan{Old: []uint32{1, 2, 3}, New: []uint32{1, 2}, Lost: []uint32{3}}
	n.notePongAges([]*dlmpeerv1.PongAge{{Node: 3, AgeNanos: int64(100 * time.Millisecond)}})
	// 300ms + its margin (30ms + 2 ticks), from 100ms ago.
	if got, want := n.leaseWait(plan), 270*time.Millisecond; got != want {
		t.Errorf("leaseWait without the lost node's lease = %v, want %v", got, want)
	}
	n.notePongAges([]*dlmpeerv1.PongAge{{Node: 3, AgeNanos: int64(100 * time.Millisecond), LeaseNanos: int64(3 * time.Second)}})
	// 3s + its margin (300ms + 2 ticks), from 100ms ago.
	if got, want := n.leaseWait(plan), 3240*time.Millisecond; got != want {
		t.Errorf("leaseWait with the lost node's 3s lease = %v, want %v", got, want)
	}
}
