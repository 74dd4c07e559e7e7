package pgroup

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

// FuzzStep drives node 1's core of a cluster of nodes 1..4 with a
// sequence of events the fuzzer writes, peers' Reports and Ended with any
// content among them (what a decoded peer message can say). Nothing may
// panic, a refusal is ErrInvalid, ErrInUse or ErrDown, and
// after every step node 1's tables hold only records it may hold: its
// origin table processes of its own on nodes UP, its local table
// processes that run on it, held sets only of DOWN origins (or of one a
// peer whose view is ahead said is DOWN).
func FuzzStep(f *testing.F) {
	f.Add([]byte{0, 1, 2, 10, 3, 2, 4, 1, 5, 1, 6, 1, 2, 7, 1, 2})
	f.Add([]byte{3, 2, 2, 3, 2, 4, 2, 0, 1, 1, 5, 0, 6, 2, 1, 7, 2, 1, 8, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		c := New(Config{Self: 1})
		c.Start(1, []uint32{1, 2, 3, 4})
		epoch := uint64(1)
		now := t0
		next := func() byte {
			if len(b) == 0 {
				return 0
			}
			v := b[0]
			b = b[1:]
			return v
		}
		proc := func() Proc {
			return Proc{CPID: cpid.CPID(int32(next()%5)<<cpid.PIDBits | int32(next()%4)), Node: uint32(next() % 6), PID: int32(next() % 4),
				PGID: cpid.CPID(int32(next()%3) << cpid.PIDBits), UID: uint32(next() % 3), TTY: next()%2 == 0, Detached: next()%2 == 0}
		}
		for len(b) > 0 {
			var ev Event
			switch next() % 9 {
			case 0:
				ev = Started{Proc: proc()}
			case 1:
				ev = Ended{CPID: proc().CPID, Node: uint32(next() % 6)}
			case 2:
				epoch++
				ev = NodeDown{Epoch: epoch, Node: uint32(next() % 6)}
			case 3:
				epoch++
				ev = NodeUp{Epoch: epoch, Node: uint32(next() % 6)}
			case 4:
				r := Report{From: uint32(next() % 6), Origin: uint32(next() % 6), Epoch: uint64(next() % 8)}
				for range next() % 4 {
					r.Procs = append(r.Procs, proc())
				}
				ev = r
			case 5:
				ev = Lookup{ID: 1, CPID: proc().CPID}
			case 6:
				ev = Kill{ID: 2, Caller: uint32(next() % 3), Target: cpid.Target{ID: proc().CPID, Group: next()%2 == 0}, Signal: syscall.Signal(next() % 16)}
			case 7:
				now = now.Add(time.Duration(next()) * 100 * time.Millisecond)
				c.Tick(now)
				continue
			default:
				_ = c.Ready()
				continue
			}
			if err := c.Step(now, ev); err != nil && !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrInUse) && !errors.Is(err, ErrDown) {
				t.Fatalf("Step(%#v) = %v", ev, err)
			}
			for x, p := range c.origin {
				if x.Node() != 1 || p.CPID != x || (!c.up[p.Node] && p.Node != 1) || valid(p) != nil {
					t.Fatalf("origin table holds %v", p)
				}
			}
			for x, p := range c.local {
				if p.Node != 1 || p.CPID != x || valid(p) != nil {
					t.Fatalf("local table holds %v", p)
				}
			}
			for o, byHolder := range c.held {
				for h, set := range byHolder {
					if o == 1 || (c.up[o] && set.epoch <= c.epoch) {
						t.Fatalf("holds processes of origin %d, UP, from %d at epoch %d (view %d)", o, h, set.epoch, c.epoch)
					}
				}
			}
		}
	})
}
