package server

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/client/dlm"
)

// ownGoroutines returns the stacks of the goroutines, other than the
// caller's, running code of dlmd or of the peer links.
func ownGoroutines() []string {
	return goroutinesIn("openssi/daemons/dlmd/", "openssi/internal/peerlink")
}

// goroutinesIn returns the stacks of the goroutines, other than the
// caller's, with a frame whose name contains one of marks.
func goroutinesIn(marks ...string) []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	// The first stack is the caller's.
	for _, g := range strings.Split(string(buf), "\n\n")[1:] {
		for _, m := range marks {
			if strings.Contains(g, m) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// TestStopJoinsEveryGoroutine: once a dlmd's servers and loop have
// stopped, none of its goroutines is left, not even those of sessions
// still open or of links to nodes still up. No polling: stopping returns
// only after the joins.
func TestStopJoinsEveryGoroutine(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	const ls = "joins"
	// Sessions on every node, one holding a lock the others wait for, so
	// that the links carry requests when everything stops.
	held, err := c.client(ctx, 1).Lock(ctx, ls, "r", dlm.EX)
	if err != nil {
		t.Fatal(err)
	}
	_ = held
	waiting := make(chan error, len(c.nums))
	for _, num := range c.nums[1:] {
		cl := c.client(ctx, num)
		go func() {
			_, err := cl.Lock(ctx, ls, "r", dlm.EX)
			waiting <- err
		}()
	}
	waitFor(t, 5*time.Second, "the requests to queue on the master", func() bool { return len(c.dump(ls)) == 3 })
	// A session the loop ends by itself (the core closes its queue, as
	// when the node fences) while its client stays connected.
	c.client(ctx, 2)
	for _, num := range c.nums {
		c.stop(num, false)
	}
	for range c.nums[1:] {
		<-waiting // granted once node 1 stopped, or refused as its node stopped
	}
	if left := ownGoroutines(); len(left) > 0 {
		t.Fatalf("%d goroutines of dlmd left after stopping every node:\n\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// TestStoppedLoopEndsItsSessions: when the loop stops before the servers,
// Run ends the sessions and returns only once their goroutines are gone.
func TestStoppedLoopEndsItsSessions(t *testing.T) {
	c := startCluster(t, 1, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := c.client(ctx, 1)
	if _, err := cl.Lock(ctx, "joins", "r", dlm.EX); err != nil {
		t.Fatal(err)
	}
	c.client(ctx, 1) // idle
	c.nodes[1].stopLoop()
	if left := goroutinesIn("server.(*API).Session"); len(left) > 0 {
		t.Fatalf("%d goroutines of sessions left after Run returned:\n\n%s", len(left), strings.Join(left, "\n\n"))
	}
}
