package server

import (
	"context"
	"testing"
	"time"

	"github.com/openssi/openssi/client/dlm"
)

// TestPingAnswersLocally: dlm.Client.Ping (a Cancel of lock id 0, which no
// lock has) is answered by the node's own dlmd and leaves the session and
// its locks as they were; initfailover's Elector probes its dlmd with it.
func TestPingAnswersLocally(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl := c.client(ctx, 1)
	l, err := cl.Lock(ctx, "app", "r", dlm.EX)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := cl.Ping(ctx); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	}
	if err := cl.Err(); err != nil {
		t.Fatalf("the session ended: %v", err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatalf("Unlock after Ping: %v", err)
	}
}
