package server

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// TestOrphansSurviveRemasterAndArePurged: a persistent lock whose session
// ended stays granted as an orphan, also after its master is lost and the
// resource is rebuilt elsewhere; Purge on the owner's node releases it
// (only a caller allowed to use the lockspace, only the orphans of the
// process asked for).
func TestOrphansSurviveRemasterAndArePurged(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ls = "orphans"
	far := c.resourceMasteredOn(t, ctx, ls, 3, "far")
	near := c.resourceMasteredOn(t, ctx, ls, 1, "near")
	owner := c.client(ctx, 1)
	for _, r := range []string{far, near} {
		if _, err := owner.Lock(ctx, ls, r, dlm.EX, dlm.Persistent()); err != nil {
			t.Fatal(err)
		}
	}
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	other := c.client(ctx, 2)
	blocked := func(r string) bool {
		l, err := other.Lock(ctx, ls, r, dlm.EX, dlm.NoQueue())
		if err == nil {
			_ = l.Unlock(ctx)
			return false
		}
		if !errors.Is(err, dlm.ErrWouldBlock) {
			t.Fatalf("EX NoQueue on %s from node 2: %v", r, err)
		}
		return true
	}
	for _, r := range []string{far, near} {
		if !blocked(r) {
			t.Fatalf("%s is free once its persistent holder's session ended", r)
		}
	}

	// Node 3, the master of far, is lost: far is rebuilt on a survivor,
	// with the orphan.
	c.net.partition(3)
	c.nodes[1].srv.Membership(2, 3, false)
	c.nodes[2].srv.Membership(2, 3, false)
	want := directory.Master([]uint32{1, 2}, ls, far)
	waitFor(t, 5*time.Second, "far to be rebuilt on node "+string(rune('0'+want)), func() bool { return c.masterOf(ls, far) == want })
	if !blocked(far) {
		t.Fatalf("the orphan on %s was lost when its master was", far)
	}

	// Purge: not for a caller who may not use the lockspace, nothing for
	// another process, both for ours.
	api := NewAPI(c.nodes[1].srv)
	nobody := peer.NewContext(ctx, &peer.Peer{AuthInfo: localapi.AuthInfo{Cred: localapi.Cred{PID: 1, UID: 65534, GID: 65534}}})
	if _, err := api.Purge(nobody, &dlmv1.PurgeRequest{Lockspace: ls}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("purge by uid 65534 of a root lockspace: %v, want PermissionDenied", err)
	}
	purger := c.client(ctx, 1)
	if _, err := purger.Purge(ctx, ls, -1); !errors.Is(err, dlm.ErrInvalid) {
		t.Fatalf("purge of pid -1: %v, want ErrInvalid", err)
	}
	if n, err := purger.Purge(ctx, ls, os.Getpid()+1); err != nil || n != 0 {
		t.Fatalf("purge of another process: released %d, %v; want 0", n, err)
	}
	if n, err := c.client(ctx, 2).Purge(ctx, ls, 0); err != nil || n != 0 {
		t.Fatalf("purge on node 2, which holds no orphan: released %d, %v; want 0", n, err)
	}
	if n, err := purger.Purge(ctx, ls, os.Getpid()); err != nil || n != 2 {
		t.Fatalf("purge of this process's orphans: released %d, %v; want 2", n, err)
	}
	for _, r := range []string{far, near} {
		waitFor(t, 5*time.Second, r+" to be free after the purge", func() bool { return !blocked(r) })
	}
	if n, err := purger.Purge(ctx, ls, 0); err != nil || n != 0 {
		t.Fatalf("second purge: released %d, %v; want 0", n, err)
	}
}

// TestPurgeOnlyOwnOrphans: in a lockspace two users share (through its
// group), one cannot purge the other's orphans; the owner and root can.
func TestPurgeOnlyOwnOrphans(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const ls, gid = "shared", 500
	c.store.mu.Lock()
	c.store.cfg[ls] = lockspace.Config{UID: 0, GID: gid}
	c.store.mu.Unlock()
	owner := c.userGroupClient(ctx, 1, 1000, gid)
	for _, r := range []string{"a", "b"} {
		if _, err := owner.Lock(ctx, ls, r, dlm.EX, dlm.Persistent()); err != nil {
			t.Fatal(err)
		}
	}
	if err := owner.Close(); err != nil {
		t.Fatal(err)
	}
	held := func(r string) bool {
		l, err := c.client(ctx, 2).Lock(ctx, ls, r, dlm.EX, dlm.NoQueue())
		if err == nil {
			_ = l.Unlock(ctx)
			return false
		}
		if !errors.Is(err, dlm.ErrWouldBlock) {
			t.Fatalf("EX NoQueue on %s: %v", r, err)
		}
		return true
	}
	other := c.userGroupClient(ctx, 1, 1001, gid)
	if n, err := other.Purge(ctx, ls, 0); err != nil || n != 0 {
		t.Fatalf("purge by uid 1001 of uid 1000's orphans: released %d, %v; want 0", n, err)
	}
	if n, err := other.Purge(ctx, ls, os.Getpid()); err != nil || n != 0 {
		t.Fatalf("purge by uid 1001 of uid 1000's process: released %d, %v; want 0", n, err)
	}
	if !held("a") || !held("b") {
		t.Fatal("another user's purge released the orphans")
	}
	if n, err := c.userGroupClient(ctx, 1, 1000, gid).Purge(ctx, ls, os.Getpid()); err != nil || n != 2 {
		t.Fatalf("purge by the owner: released %d, %v; want 2", n, err)
	}
	for _, r := range []string{"a", "b"} {
		waitFor(t, 5*time.Second, r+" to be free after the owner's purge", func() bool { return !held(r) })
	}
}
