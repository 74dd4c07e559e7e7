package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openssi/openssi/client/dlm"
)

// TestNoSquatting: a name a user takes first is not taken from another
// user. User 2000's first use of "jobs" does not lock user 1000 out of
// their own "jobs"; each user's "jobs" is one lockspace on every node; a
// shared lockspace root made first is the one users name (and its owner
// decides who may use it).
func TestNoSquatting(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ls = "jobs"
	squatter := c.userClient(ctx, 1, 2000)
	sq, err := squatter.Lock(ctx, ls, "r", dlm.EX)
	if err != nil {
		t.Fatalf("uid 2000's first lock in %q: %v", ls, err)
	}
	defer func() { _ = sq.Unlock(ctx) }()

	alice := c.userClient(ctx, 2, 1000)
	mine, err := alice.Lock(ctx, ls, "r", dlm.EX, dlm.NoQueue())
	if err != nil {
		t.Fatalf("uid 1000's lock in its own %q after uid 2000 used the name: %v", ls, err)
	}
	defer func() { _ = mine.Unlock(ctx) }()

	// Alice's "jobs" is the same lockspace from node 1: her EX holds.
	again := c.userClient(ctx, 1, 1000)
	if _, err := again.Lock(ctx, ls, "r", dlm.EX, dlm.NoQueue()); !errors.Is(err, dlm.ErrWouldBlock) {
		t.Fatalf("uid 1000's second EX on %s/r from node 1: %v, want ErrWouldBlock", ls, err)
	}

	// Each sees only their own in a listing of the name.
	for _, cl := range []*dlm.Client{squatter, alice} {
		l, err := cl.Locks(ctx, dlm.InLockspace(ls))
		if err != nil {
			t.Fatal(err)
		}
		if len(l.Resources) != 1 || len(l.Resources[0].Locks) != 1 {
			t.Fatalf("listing of %q: %+v, want one resource with one lock", ls, l.Resources)
		}
	}

	// A name root used first is shared: users name root's lockspace, and
	// root's owner check applies.
	root := c.client(ctx, 1)
	rl, err := root.Lock(ctx, "shared", "r", dlm.NL)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rl.Unlock(ctx) }()
	if _, err := alice.Lock(ctx, "shared", "r", dlm.PR); !errors.Is(err, dlm.ErrPermission) {
		t.Fatalf("uid 1000's lock in root's shared lockspace: %v, want ErrPermission", err)
	}
}
