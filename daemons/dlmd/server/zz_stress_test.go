package server

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/openssi/openssi/client/dlm"
)

func TestZZStress(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rnd := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 2))
	for i := 0; i < 8; i++ {
		a := uint32(1 + rnd.IntN(3))
		c.net.partition(a)
		if rnd.IntN(3) == 0 {
			b := uint32(1 + rnd.IntN(3))
			time.Sleep(time.Duration(rnd.IntN(200)) * time.Millisecond)
			c.net.partition(b)
			time.Sleep(time.Duration(rnd.IntN(500)) * time.Millisecond)
			c.net.heal(b)
		}
		time.Sleep(time.Duration(100+rnd.IntN(600)) * time.Millisecond)
		c.net.heal(a)
		time.Sleep(time.Duration(rnd.IntN(500)) * time.Millisecond)
	}
	for _, num := range c.nums {
		cl := c.client(ctx, num)
		lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
		l, err := cl.Lock(lctx, "stress", fmt.Sprintf("x%d", num), dlm.EX)
		lcancel()
		if err != nil {
			for _, n := range c.nums {
				s := c.nodes[n].srv
				_ = s.call(context.Background(), func() {
					if s.rec == nil {
						t.Logf("node %d: no rec; last %v inc %d", n, s.last.ID, s.cfg.Incarnation)
					} else {
						t.Logf("node %d inc %d: rec %v missing %v plan %v", n, s.cfg.Incarnation, s.rec.id, s.rec.barrier.Missing(), s.rec.plan != nil)
					}
					for pn, p := range s.peersOut {
						t.Logf("   out %d: link %d pending %d masterInc %d recv %d gen %d", pn, p.link, p.log.pending(), p.masterInc, p.recv.received(), p.log.gen)
					}
					for pn, in := range s.peersIn {
						t.Logf("   in %d: link %d inc %d recv %d gen %d", pn, in.link, in.inc, in.recv.received(), in.log.gen)
					}
				})
			}
			f, _ := os.Create("/tmp/goroutines.txt")
			_ = pprof.Lookup("goroutine").WriteTo(f, 2)
			f.Close()
			t.Fatalf("node %d: %v", num, err)
		}
		_ = l.Unlock(ctx)
	}
}
