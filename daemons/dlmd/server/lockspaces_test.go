package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// as is ctx for a local API call by uid with gid and groups.
func as(ctx context.Context, uid, gid uint32, groups ...uint32) context.Context {
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: localapi.AuthInfo{Cred: localapi.Cred{PID: 1, UID: uid, GID: gid, Groups: groups}}})
}

// TestLockspaceAdministration: create, chmod, chown, delete and list
// follow the rules of files (chown(2) for owners and groups), the mode
// decides who may lock, a lockspace with locks is not deleted, and a uid
// may own only so many lockspaces.
func TestLockspaceAdministration(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api := NewAPI(c.nodes[1].srv)
	root, alice, bob := as(ctx, 0, 0), as(ctx, 1000, 1000, 100), as(ctx, 2000, 100)
	const ls = "shared"
	type step struct {
		name string
		do   func() error
		want codes.Code
	}
	chmod := func(who context.Context, mode uint32) func() error {
		return func() error {
			_, err := api.ChmodLockspace(who, &dlmv1.ChmodLockspaceRequest{Name: ls, Mode: mode})
			return err
		}
	}
	chown := func(who context.Context, uid, gid *uint32) func() error {
		return func() error {
			r := &dlmv1.ChownLockspaceRequest{Name: ls}
			if uid != nil {
				r.Uid, r.HasUid = *uid, true
			}
			if gid != nil {
				r.Gid, r.HasGid = *gid, true
			}
			_, err := api.ChownLockspace(who, r)
			return err
		}
	}
	del := func(who context.Context) func() error {
		return func() error {
			_, err := api.DeleteLockspace(who, &dlmv1.DeleteLockspaceRequest{Name: ls})
			return err
		}
	}
	u := func(v uint32) *uint32 { return &v }
	bobClient := c.userGroupClient(ctx, 2, 2000, 100)
	var bobLock *dlm.Lock
	bobLocks := func() error {
		l, err := bobClient.Lock(ctx, ls, "r", dlm.EX, dlm.NoQueue())
		if err == nil {
			bobLock = l
		}
		if errors.Is(err, dlm.ErrPermission) {
			return status.Error(codes.PermissionDenied, err.Error())
		}
		return err
	}
	steps := []step{
		{"chmod of a lockspace that does not exist", chmod(root, 0o600), codes.NotFound},
		{"root creates a shared lockspace", func() error {
			_, err := api.CreateLockspace(root, &dlmv1.CreateLockspaceRequest{Name: ls, Mode: 0o600})
			return err
		}, codes.OK},
		{"create again", func() error {
			_, err := api.CreateLockspace(root, &dlmv1.CreateLockspaceRequest{Name: ls})
			return err
		}, codes.AlreadyExists},
		{"alice may not chmod root's", chmod(alice, 0o666), codes.PermissionDenied},
		{"root gives it to alice", chown(root, u(1000), u(1000)), codes.OK},
		{"alice may not give it away", chown(alice, u(2000), nil), codes.PermissionDenied},
		{"alice may not set a group she is not in", chown(alice, nil, u(200)), codes.PermissionDenied},
		{"alice sets one of her groups", chown(alice, u(1000), u(100)), codes.OK},
		{"bob, in the group, may not lock at 0600", bobLocks, codes.PermissionDenied},
		{"bob may not chmod alice's", chmod(bob, 0o666), codes.PermissionDenied},
		{"a mode beyond the permission bits", chmod(alice, 0o1660), codes.InvalidArgument},
		{"a mode of no bits", chmod(alice, 0), codes.InvalidArgument},
		{"alice opens it to her group", chmod(alice, 0o660), codes.OK},
		{"bob locks at 0660 (his node re-reads a refusing record within rereadRefused)", func() error {
			var err error
			waitFor(t, 3*rereadRefused, "bob's lock", func() bool {
				err = bobLocks()
				return status.Code(err) != codes.PermissionDenied
			})
			return err
		}, codes.OK},
		{"bob may not delete alice's", del(bob), codes.PermissionDenied},
		{"alice may not delete it while bob holds a lock", del(alice), codes.FailedPrecondition},
		{"bob unlocks", func() error { return bobLock.Unlock(ctx) }, codes.OK},
		{"alice deletes it once the unlock reached the master", func() error {
			var err error
			waitFor(t, 5*time.Second, "the delete to pass", func() bool {
				err = del(alice)()
				return status.Code(err) != codes.FailedPrecondition
			})
			return err
		}, codes.OK},
		{"and it is gone", chmod(root, 0o600), codes.NotFound},
	}
	for _, st := range steps {
		if err := st.do(); status.Code(err) != st.want {
			t.Fatalf("%s: %v, want %v", st.name, err, st.want)
		}
	}

	// Listing: each user sees its own and what it may see; root all.
	for _, name := range []string{"a1", "a2"} {
		if _, err := api.CreateLockspace(alice, &dlmv1.CreateLockspaceRequest{Name: name, Mode: 0o600}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := api.CreateLockspace(bob, &dlmv1.CreateLockspaceRequest{Name: "a1"}); err != nil {
		t.Fatalf("bob's own a1 beside alice's: %v", err)
	}
	names := func(who context.Context) []string {
		l, err := api.ListLockspaces(who, &dlmv1.ListLockspacesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, i := range l.GetLockspaces() {
			out = append(out, i.GetName())
		}
		return out
	}
	if got := names(alice); len(got) != 2 {
		t.Fatalf("alice lists %v, want her a1 and a2", got)
	}
	if got := names(bob); len(got) != 1 {
		t.Fatalf("bob lists %v, want his a1", got)
	}

	// The limit: alice owns two; with a limit of two, neither an explicit
	// nor a first-use creation passes.
	c.nodes[1].srv.cfg.MaxLockspacesPerUID = 2
	if _, err := api.CreateLockspace(alice, &dlmv1.CreateLockspaceRequest{Name: "a3"}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("alice's third lockspace with a limit of 2: %v, want ResourceExhausted", err)
	}
	aliceClient := c.userGroupClient(ctx, 1, 1000, 1000)
	if _, err := aliceClient.Lock(ctx, "a3", "r", dlm.NL); err == nil {
		t.Fatal("alice's third lockspace on first use with a limit of 2 was created")
	}
	if _, err := aliceClient.Lock(ctx, "a1", "r", dlm.NL); err != nil {
		t.Fatalf("alice's lock in her own a1 at the limit: %v", err)
	}

	// Through the client library: errors match their sentinels and read
	// once.
	if l, err := aliceClient.ListLockspaces(ctx); err != nil || len(l) != 2 || !l[0].Own || l[0].Name != "a1" || l[0].Mode != 0o600 {
		t.Fatalf("alice's ListLockspaces: %+v, %v", l, err)
	}
	errs := []struct {
		err  error
		is   error
		want string
	}{
		{aliceClient.DeleteLockspace(ctx, "nope"), dlm.ErrNoLockspace, "dlm: delete lockspace nope: no such lockspace"},
		{second(aliceClient.CreateLockspace(ctx, "a2")), dlm.ErrLockspaceExists, "dlm: create lockspace a2: lockspace exists"},
		{second(aliceClient.CreateLockspace(ctx, "a9")), dlm.ErrTooManyLockspaces,
			"dlm: create lockspace a9: too many lockspaces: uid 1000 owns 2 lockspaces, the limit (dlmd.max_lockspaces_per_uid); delete one with ssi lockspace delete"},
		{aliceClient.DeleteLockspace(ctx, "a1"), dlm.ErrLockspaceInUse, "dlm: delete lockspace a1: lockspace has locks: 1 resources have locks; release them (or purge orphans) first"},
	}
	for _, e := range errs {
		if !errors.Is(e.err, e.is) || e.err.Error() != e.want {
			t.Errorf("error %v\nwant %v reading\n\t%s", e.err, e.is, e.want)
		}
	}

	// Root reaches a user's own lockspace by its stored name; no one else
	// can name it.
	if _, err := api.DeleteLockspace(bob, &dlmv1.DeleteLockspaceRequest{Name: "~1000.a2"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("bob naming alice's own a2: %v, want PermissionDenied", err)
	}
	if _, err := api.DeleteLockspace(root, &dlmv1.DeleteLockspaceRequest{Name: "~1000.a2"}); err != nil {
		t.Fatalf("root deleting alice's own a2: %v", err)
	}
	if _, err := c.client(ctx, 1).Lock(ctx, "~1000.nope", "r", dlm.NL); !errors.Is(err, dlm.ErrInvalid) {
		t.Fatalf("root's first use of a user's own name: %v, want ErrInvalid", err)
	}
}

func second[T any](_ T, err error) error { return err }
