package node

import (
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
)

// TestToss drives the sweep of a one-node dlmd by hand: a master is
// forgotten once unused for the toss time, a use postpones it, a resource
// with a lock is never given up, and a given-up resource leaves the
// directory.
func TestToss(t *testing.T) {
	const toss = 10 * time.Second
	n := New(Config{Node: 1, Incarnation: 1, Toss: toss})
	n.dir = []uint32{1}
	t0 := time.Unix(1000, 0)
	idle := directory.Key{Lockspace: "ls", Resource: "idle"}
	used := directory.Key{Lockspace: "ls", Resource: "used"}
	held := directory.Key{Lockspace: "ls", Resource: "held"}
	other := directory.Key{Lockspace: "ls", Resource: "other"}
	for _, k := range []directory.Key{idle, used, held} {
		if m := n.dirTable.Lookup(k, 1); m != 1 {
			t.Fatalf("directory gave %v to node %d", k, m)
		}
		n.becomeMaster(k, t0, 0)
	}
	n.learnRoute(other, 2, t0)
	tb, err := n.table("ls", lockspace.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Lock(t0, lockspace.Cred{}, lockspace.Request{Owner: lockspace.Owner{Node: 1, Client: 1}, ID: 1, Resource: "held", Mode: lockspace.EX}); err != nil {
		t.Fatal(err)
	}

	type want struct {
		mastered map[directory.Key]bool
		route    bool
	}
	steps := []struct {
		at   time.Duration
		use  *directory.Key // used just before the sweep
		want want
	}{
		{at: 5 * time.Second, want: want{map[directory.Key]bool{idle: true, used: true, held: true}, true}},
		{at: 6 * time.Second, use: &used, want: want{map[directory.Key]bool{idle: true, used: true, held: true}, true}},
		{at: toss, want: want{map[directory.Key]bool{used: true, held: true}, false}},
		{at: toss + 5*time.Second, want: want{map[directory.Key]bool{used: true, held: true}, false}},
		{at: 16 * time.Second, want: want{map[directory.Key]bool{held: true}, false}},
		{at: 10 * toss, want: want{map[directory.Key]bool{held: true}, false}},
	}
	for i, st := range steps {
		now := t0.Add(st.at)
		if st.use != nil {
			n.mastered[*st.use].used = now
		}
		n.toss(now)
		for _, k := range []directory.Key{idle, used, held} {
			_, got := n.mastered[k]
			_, inDir := n.dirTable.Master(k)
			if got != st.want.mastered[k] || inDir != got {
				t.Fatalf("step %d (%v): %s mastered %v, in the directory %v; want %v", i, st.at, k.Resource, got, inDir, st.want.mastered[k])
			}
		}
		if _, got := n.routes[other]; got != st.want.route {
			t.Fatalf("step %d (%v): route to %s known %v, want %v", i, st.at, other.Resource, got, st.want.route)
		}
	}
	if n := len(n.tossQ) - n.tossHead; n != 1 {
		t.Fatalf("%d items left to sweep, want 1 (the held resource)", n)
	}
}
