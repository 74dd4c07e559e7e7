package server

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/dlmd/dlmdspec"
	"github.com/openssi/openssi/daemons/dlmd/node"
	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// defaultLimits are dlmd's limits at their shipped defaults.
func defaultLimits() node.Limits {
	d := dlmdspec.Default()
	return node.Limits{LocksPerSession: d.MaxLocksPerSession, LocksPerUID: d.MaxLocksPerUID,
		PendingPerSession: d.MaxPendingPerSession, PendingPerUID: d.MaxPendingPerUID}
}

// heapAlloc is the live heap after a collection.
func heapAlloc() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// The slow-reader attack: one session sends 100,000 lock requests on
// distinct resources and never reads a reply. dlmd must neither keep all
// of them nor buffer their replies: the locks past
// dlmd.max_locks_per_session are refused, and once the session's
// outbound queue is full dlmd stops reading it (the client's sends block
// in gRPC's flow control). The heap (dlmd and the client, one process)
// must grow by less than maxGrowth. Before the limits and the bound it
// grew by about 130 MiB.
func TestSlowReaderIsBounded(t *testing.T) {
	const (
		requests  = 100_000
		maxGrowth = 32 << 20
	)
	limits := defaultLimits()
	c := startCluster(t, 1, clusterOpts{limits: limits})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := localapi.Dial(ctx, c.nodes[1].socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	before := heapAlloc()
	st, err := dlmv1.NewDlmClient(conn).Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var sent atomic.Int64
	sendDone := make(chan error, 1)
	go func() {
		for i := range requests {
			err := st.Send(&dlmv1.ClientMessage{Tag: uint64(i + 1), Op: &dlmv1.ClientMessage_Lock{Lock: &dlmv1.LockRequest{
				Lockspace: "attack", Resource: []byte(fmt.Sprintf("resource-%06d", i)), Mode: dlmv1.Mode(dlm.EX)}}})
			if err != nil {
				sendDone <- err
				return
			}
			sent.Add(1)
		}
		sendDone <- nil
	}()
	// Wait until the sender is done or stalls (dlmd stopped reading).
	last, still := int64(-1), 0
	for still < 10 {
		select {
		case err := <-sendDone:
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			sendDone <- nil
			still = 10
			continue
		case <-time.After(100 * time.Millisecond):
		}
		if n := sent.Load(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	after := heapAlloc()
	growth := int64(after) - int64(before)
	t.Logf("slow reader: %d of %d requests sent before dlmd stopped reading; heap %.1f MiB -> %.1f MiB (growth %.1f MiB, limit %d MiB)",
		sent.Load(), requests, float64(before)/(1<<20), float64(after)/(1<<20), float64(growth)/(1<<20), maxGrowth>>20)
	if growth > maxGrowth {
		t.Errorf("heap grew by %.1f MiB under the slow-reader attack, want < %d MiB", float64(growth)/(1<<20), maxGrowth>>20)
	}

	// The loop still serves everyone else while the attacker is stalled.
	other := c.client(ctx, 1)
	lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
	l, err := other.Lock(lctx, "attack", "resource-000000-other", dlm.EX)
	lcancel()
	if err != nil {
		t.Fatalf("another session's lock while the slow reader is stalled: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// Now read: every request is answered, those past the session's
	// limit with STATUS_LIMIT naming the setting.
	ok, refused := 0, 0
	for ok+refused < requests {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d replies: %v", ok+refused, err)
		}
		r := m.GetReply()
		if r == nil {
			continue
		}
		switch r.GetStatus() {
		case dlmv1.Status_STATUS_OK:
			ok++
		case dlmv1.Status_STATUS_LIMIT:
			if refused == 0 && !strings.Contains(r.GetMessage(), "too many locks: session holds 10000 (dlmd.max_locks_per_session)") {
				t.Errorf("refusal says %q", r.GetMessage())
			}
			refused++
		default:
			t.Fatalf("reply %v", r)
		}
	}
	if err := <-sendDone; err != nil {
		t.Fatalf("send: %v", err)
	}
	if ok != limits.LocksPerSession || refused != requests-limits.LocksPerSession {
		t.Errorf("%d granted, %d refused; want %d and %d", ok, refused, limits.LocksPerSession, requests-limits.LocksPerSession)
	}
}

// lockMany takes n EX locks named prefix-%06d in lockspace ls on a raw
// session of node num, reading the replies as it goes; the session stays
// open until the test ends.
func lockMany(t *testing.T, ctx context.Context, c *testCluster, num uint32, ls, prefix string, n int) {
	t.Helper()
	conn, err := localapi.Dial(ctx, c.nodes[num].socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	st, err := dlmv1.NewDlmClient(conn).Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sendErr := make(chan error, 1)
	go func() {
		for i := range n {
			if err := st.Send(&dlmv1.ClientMessage{Tag: uint64(i + 1), Op: &dlmv1.ClientMessage_Lock{Lock: &dlmv1.LockRequest{
				Lockspace: ls, Resource: []byte(fmt.Sprintf("%s-%06d", prefix, i)), Mode: dlmv1.Mode(dlm.EX)}}}); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- nil
	}()
	for granted := 0; granted < n; {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("after %d grants: %v", granted, err)
		}
		if r := m.GetReply(); r != nil && r.GetStatus() != dlmv1.Status_STATUS_OK {
			t.Fatalf("lock: %v", r)
		}
		if m.GetCompletion().GetGranted() {
			granted++
		}
	}
	if err := <-sendErr; err != nil {
		t.Fatal(err)
	}
}

// TestLocksListsManyLocks: the listing of 100,000 locks (and more on a
// second node) is far past gRPC's 4 MiB message limit, which failed the
// whole listing with ResourceExhausted; dlmd now answers a page at a
// time and client/dlm reads the pages, so Locks returns every resource,
// in order, once, from either node.
func TestLocksListsManyLocks(t *testing.T) {
	const onNode1, onNode2 = 100_000, 3000
	c := startCluster(t, 2, clusterOpts{lease: 10 * time.Second}) // a long lease: the load must not fence
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	lockMany(t, ctx, c, 1, "many", "one", onNode1)
	lockMany(t, ctx, c, 2, "many", "two", onNode2)
	for _, num := range []uint32{1, 2} {
		start := time.Now()
		l, err := c.client(ctx, num).Locks(ctx)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("Locks on node %d: %v", num, err)
		}
		if len(l.Errors) > 0 {
			t.Errorf("Locks on node %d: errors %v", num, l.Errors)
		}
		if len(l.Resources) != onNode1+onNode2 {
			t.Fatalf("Locks on node %d: %d resources, want %d", num, len(l.Resources), onNode1+onNode2)
		}
		masters := map[int]int{}
		for i, r := range l.Resources {
			if i > 0 {
				p := l.Resources[i-1]
				if compareResource(p.Lockspace, []byte(p.Name), r.Lockspace, []byte(r.Name)) >= 0 {
					t.Fatalf("Locks on node %d: %s/%s listed after %s/%s", num, r.Lockspace, r.Name, p.Lockspace, p.Name)
				}
			}
			if len(r.Locks) != 1 {
				t.Fatalf("Locks on node %d: %s has %d locks", num, r.Name, len(r.Locks))
			}
			masters[r.Master]++
		}
		t.Logf("node %d lists %d resources in %v, by master %v", num, len(l.Resources), took.Round(time.Millisecond), masters)
	}
}

// TestLimitErrorReachesTheClient: a lock past dlmd.max_locks_per_session
// fails in client/dlm with ErrLimit and a message naming the setting; the
// session goes on (its locks stay, and it locks again once it released
// one).
func TestLimitErrorReachesTheClient(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{limits: node.Limits{LocksPerSession: 2}})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := c.client(ctx, 1)
	a, err := cl.Lock(ctx, "x", "a", dlm.EX)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Lock(ctx, "x", "b", dlm.EX); err != nil {
		t.Fatal(err)
	}
	_, err = cl.Lock(ctx, "x", "r", dlm.EX)
	const want = "dlm: lock x/r: limit reached: too many locks: session holds 2 (dlmd.max_locks_per_session)"
	if !errors.Is(err, dlm.ErrLimit) || err.Error() != want {
		t.Fatalf("third lock: %v\nwant %s (ErrLimit)", err, want)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Lock(ctx, "x", "r", dlm.EX); err != nil {
		t.Fatalf("lock after an unlock made room: %v", err)
	}
}

// TestSessionsPerUIDLimit: a uid may hold only dlmd.max_sessions_per_uid
// sessions open on a node. One more fails to open with ErrLimit and a
// message naming the setting; the uid's open sessions go on, other uids
// (root included) have their own count, and a closed session makes room.
// Before the limit a uid could open sessions without end, each costing
// dlmd goroutines and queues.
func TestSessionsPerUIDLimit(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{maxSessions: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a := c.userClient(ctx, 1, 1000)
	c.userClient(ctx, 1, 1000)
	socket := c.userSocket(1, 1000, 1000)
	_, err := dlm.New(ctx, dlm.WithSocket(socket))
	const want = "dlm: open session: limit reached: too many sessions: uid 1000 has 2 open on this node (dlmd.max_sessions_per_uid); close some"
	if !errors.Is(err, dlm.ErrLimit) || err.Error() != want {
		t.Fatalf("uid 1000's third session: %v\nwant %s (ErrLimit)", err, want)
	}
	if _, err := a.Lock(ctx, "x", "r", dlm.EX); err != nil {
		t.Fatalf("a session of uid 1000 after the refusal: %v", err)
	}
	c.userClient(ctx, 1, 2000)
	c.userClient(ctx, 1, 2000)
	c.client(ctx, 1)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// The count drops when dlmd's handler returns, just after Close.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := dlm.New(ctx, dlm.WithSocket(socket))
		if err == nil {
			_ = b.Close()
			break
		}
		if !errors.Is(err, dlm.ErrLimit) || time.Now().After(deadline) {
			t.Fatalf("uid 1000's session after one was closed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
