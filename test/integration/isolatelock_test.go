package integration

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/client/initnode"
	"github.com/openssi/openssi/internal/nodetest"
)

// TestIsolateRunLock: the lock that keeps runs of ssi isolate apart, on
// real dlmd across nodes: a run from another node is refused at once,
// naming the node of the one that holds it; released, it is free; a
// session that ends (ssi killed) frees it too.
func TestIsolateRunLock(t *testing.T) {
	c := startDlm(t, 2, 0)
	ctx := ctxFor(t, 90*time.Second)
	session := func(n *nodetest.Node) *dlm.Client {
		s, err := dlm.New(ctx, dlm.WithSocket(n.DlmdSocket()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := session(c.Nodes[0]), session(c.Nodes[1])
	numA := numberOf(t, ctx, c.Nodes[0])
	held, err := initnode.DLMRunLock(a).TryLock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	_, err = initnode.DLMRunLock(b).TryLock(ctx)
	var busy *initnode.BusyError
	if !errors.As(err, &busy) || busy.Node != numA {
		t.Fatalf("a second run from another node: %v, want busy naming node %d", err, numA)
	}
	t.Logf("refused in %s: %v", time.Since(t0).Round(time.Millisecond), err)
	held.Release()
	hb := takeRunLock(t, ctx, b)
	if hb.Err() != nil {
		t.Fatal(hb.Err())
	}
	// ssi killed: its session ends, dlmd releases the lock.
	b.Close()
	takeRunLock(t, ctx, a).Release()
}

// takeRunLock takes the run lock on s, retrying while a release is on
// its way to the lock's master.
func takeRunLock(t *testing.T, ctx context.Context, s *dlm.Client) initnode.Held {
	t.Helper()
	for {
		h, err := initnode.DLMRunLock(s).TryLock(ctx)
		var busy *initnode.BusyError
		switch {
		case err == nil:
			return h
		case !errors.As(err, &busy) || ctx.Err() != nil:
			t.Fatalf("take the run lock: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
