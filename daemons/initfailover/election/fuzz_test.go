package election

import (
	"testing"
	"time"
)

// FuzzCore drives node 1's core with a sequence of inputs the fuzzer
// writes, as the shell would feed them (a grant only while a request is
// out, UnitsStopped only after a stop or kill), and checks after every
// step what the shell's world must never see:
//   - the services started without the lock held, or, after a grant that
//     was not a clean hand-over, before StopTimeout has passed since it;
//   - services still running, not killed, KillAfter after the lock was
//     lost;
//   - a release of a lock not held, two requests out at once, a request
//     while holding.
func FuzzCore(f *testing.F) {
	f.Add([]byte{0, 1, 7, 7, 3, 2, 7, 7, 1})
	f.Add([]byte{0, 1, 1, 4, 2, 5, 6, 7, 8, 1})
	f.Add([]byte{0, 10, 1, 4, 3, 9, 7, 7, 7, 7, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		const st = 4 * time.Second
		c := New(Config{Self: 1, StopTimeout: st})
		for _, n := range []uint32{1, 2, 3} {
			c.SetUp(n, true)
		}
		now := t0
		var (
			requested, held, running, stopping bool
			grantAt, lostAt                    time.Time
			clean, lostRunning, killed         bool
			// killedRun: a kill since the services last started.
			killedRun bool
		)
		c.Start(now)
		next := func() byte {
			if len(b) == 0 {
				return 0
			}
			v := b[0]
			b = b[1:]
			return v
		}
		for step := 0; len(b) > 0 && step < 200; step++ {
			switch op := next() % 11; op {
			case 0, 1: // a grant, if a request is out
				if !requested {
					continue
				}
				requested, held, grantAt = false, true, now
				var v [RecordLen]byte
				valid := true
				switch next() % 5 {
				case 0:
					valid = false
				case 1:
					v = Record{Clean: true, Holder: 2}.Encode()
				case 2:
					v = Record{Holder: 2}.Encode()
				case 3:
					v = Record{Clean: true, Holder: 3, Next: uint32(next()%4 + 1), MoveBy: 3, Move: uint32(next() % 3)}.Encode()
				case 4:
					v[0] = next()
				}
				r, err := Decode(v[:])
				clean = valid && err == nil && r.Clean
				c.Granted(now, v, valid)
			case 2: // the session ends
				if held && running {
					lostRunning, lostAt, killed = true, now, killedRun
				}
				held, requested = false, false
				c.Lost(now)
			case 3: // the units are down, if a stop or kill was asked
				if !stopping {
					continue
				}
				stopping, running, lostRunning = false, false, false
				c.UnitsStopped(now)
			case 4:
				_ = c.Move(now, uint32(next()%4+1))
			case 5:
				c.Shutdown(now)
			case 6:
				c.SetUp(uint32(next()%3+1), next()%2 == 0)
			default: // time passes
				now = now.Add(time.Duration(next()) * 50 * time.Millisecond)
				c.Tick(now)
			}
			for _, a := range c.Ready() {
				switch a.Kind {
				case RequestLock:
					if requested || held {
						t.Fatalf("step %d: a request with one out (%v) or the lock held (%v)", step, requested, held)
					}
					requested = true
				case ReleaseLock:
					if !held {
						t.Fatalf("step %d: release of a lock not held", step)
					}
					held = false
				case StartUnits:
					if !held {
						t.Fatalf("step %d: started without the lock", step)
					}
					if !clean && now.Before(grantAt.Add(st)) {
						t.Fatalf("step %d: started %v after a grant that was not clean", step, now.Sub(grantAt))
					}
					running, killedRun = true, false
				case StopUnits:
					stopping = true
				case KillUnits:
					stopping, killed, killedRun = true, true, true
				}
			}
			if lostRunning && !killed && !now.Before(lostAt.Add(KillAfter(st))) {
				t.Fatalf("step %d: services not killed %v after the lock was lost", step, now.Sub(lostAt))
			}
		}
	})
}
