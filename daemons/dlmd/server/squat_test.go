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

// TestFirstUseRefusals: a user's first use of a lockspace name is refused
// with ErrPermission when the name is not one it may use (the system's
// openssi.*, a user's own as dlmd stores it, ~<uid>.*, a shared
// lockspace whose mode shuts it out), whether or not the user is at its
// lockspace quota; and with ErrLimit, naming dlmd.max_lockspaces_per_uid
// and how to make room, only when the name is one it could create but
// it owns its quota already. Root has no quota. Before, the quota was
// refused as ErrPermission and ~<uid>.* names as ErrInvalid.
func TestFirstUseRefusals(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{maxLockspaces: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root := c.client(ctx, 1)
	if _, err := root.CreateLockspace(ctx, "closed", dlm.WithMode(0o600)); err != nil {
		t.Fatal(err)
	}
	full := c.userClient(ctx, 1, 1000) // owns "mine": at its quota of 1
	if _, err := full.Lock(ctx, "mine", "r", dlm.NL); err != nil {
		t.Fatal(err)
	}
	fresh := c.userClient(ctx, 1, 3000) // owns nothing
	const quota = "limit reached: uid 1000 owns 1 lockspaces, the limit (dlmd.max_lockspaces_per_uid); delete one with ssi lockspace delete"
	tests := []struct {
		who    string
		c      *dlm.Client
		create bool // CreateLockspace rather than a first Lock
		name   string
		is     error  // nil: allowed
		want   string // the error's text after "dlm: lock <name>/r: " or "dlm: create lockspace <name>: "
	}{
		{"at quota", full, false, "new", dlm.ErrLimit, quota},
		{"at quota", full, true, "new", dlm.ErrLimit, "too many lockspaces: uid 1000 owns 1 lockspaces, the limit (dlmd.max_lockspaces_per_uid); delete one with ssi lockspace delete"},
		{"at quota", full, false, "mine", nil, ""},
		{"at quota", full, false, "openssi.x", dlm.ErrPermission, `permission denied: lockspace "openssi.x" is the system's, root only: caller is uid 1000`},
		{"at quota", full, true, "openssi.x", dlm.ErrPermission, ""},
		{"at quota", full, false, "~2000.jobs", dlm.ErrPermission, `permission denied: lockspace "~2000.jobs": ~<uid>.<name> is how dlmd stores a user's own lockspace, which only root names so (a user names its own without the prefix): caller is uid 1000`},
		{"at quota", full, false, "~1000.mine", dlm.ErrPermission, ""},
		{"at quota", full, true, "~1000.other", dlm.ErrPermission, ""},
		{"at quota", full, false, "closed", dlm.ErrPermission, `permission denied: lockspace "closed" belongs to uid 0 gid 0 mode 0600, caller is uid 1000`},
		{"under quota", fresh, false, "openssi.x", dlm.ErrPermission, ""},
		{"under quota", fresh, false, "~2000.jobs", dlm.ErrPermission, ""},
		{"under quota", fresh, true, "~3000.jobs", dlm.ErrPermission, ""},
		{"under quota", fresh, false, "closed", dlm.ErrPermission, ""},
		{"under quota", fresh, false, "new", nil, ""},
		{"root", root, false, "r1", nil, ""},
		{"root", root, true, "r2", nil, ""},
	}
	for _, tt := range tests {
		var err error
		prefix := "dlm: lock " + tt.name + "/r: "
		if tt.create {
			prefix = "dlm: create lockspace " + tt.name + ": "
			_, err = tt.c.CreateLockspace(ctx, tt.name)
		} else {
			_, err = tt.c.Lock(ctx, tt.name, "r", dlm.NL)
		}
		switch {
		case tt.is == nil && err != nil:
			t.Errorf("%s: %v, want it allowed", tt.who, err)
		case tt.is == nil:
		case !errors.Is(err, tt.is):
			t.Errorf("%s: %v, want %v", tt.who, err, tt.is)
		case tt.is != dlm.ErrLimit && errors.Is(err, dlm.ErrLimit):
			t.Errorf("%s: %v is also ErrLimit", tt.who, err)
		case tt.want != "" && err.Error() != prefix+tt.want:
			t.Errorf("%s: error\n\t%v\nwant\n\t%s", tt.who, err, prefix+tt.want)
		}
	}
	// Listing and purging another user's own lockspace by its stored
	// name: refused as a name the caller may not use, too.
	if _, err := fresh.Locks(ctx, dlm.InLockspace("~1000.mine")); !errors.Is(err, dlm.ErrPermission) {
		t.Errorf("uid 3000 listing ~1000.mine: %v, want ErrPermission", err)
	}
	if _, err := fresh.Purge(ctx, "~1000.mine", 0); !errors.Is(err, dlm.ErrPermission) {
		t.Errorf("uid 3000 purging ~1000.mine: %v, want ErrPermission", err)
	}
}
