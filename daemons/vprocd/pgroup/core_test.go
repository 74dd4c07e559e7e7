package pgroup

import (
	"errors"
	"math/rand/v2"
	"slices"
	"syscall"
	"testing"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

func TestSurrogate(t *testing.T) {
	if _, ok := Surrogate(1, nil); ok {
		t.Fatal("a surrogate with no node UP")
	}
	if _, ok := Surrogate(1, []uint32{1}); ok {
		t.Fatal("an origin is its own surrogate")
	}
	all := []uint32{1, 2, 3, 4, 5, 6, 7, 8}
	spread := map[uint32]int{}
	for o := uint32(1); o <= 64; o++ {
		s, ok := Surrogate(o, all)
		if !ok || s == o || !slices.Contains(all, s) {
			t.Fatalf("Surrogate(%d) = %d, %v", o, s, ok)
		}
		if s2, _ := Surrogate(o, []uint32{8, 7, 6, 5, 4, 3, 2, 1}); s2 != s {
			t.Fatalf("Surrogate(%d) depends on the order: %d, %d", o, s, s2)
		}
		spread[s]++
		// Only the origins of a surrogate that leaves move.
		for _, gone := range all {
			rest := slices.DeleteFunc(slices.Clone(all), func(n uint32) bool { return n == gone })
			s3, _ := Surrogate(o, rest)
			if gone != s && s3 != s {
				t.Fatalf("Surrogate(%d) moved from %d to %d when %d left", o, s, s3, gone)
			}
		}
	}
	if len(spread) < 6 {
		t.Errorf("64 origins' surrogates over 8 nodes: %v", spread)
	}
}

func TestRoute(t *testing.T) {
	c := New(Config{Self: 2})
	c.Start(1, []uint32{1, 2, 3})
	for _, tc := range []struct {
		x    cpid.CPID
		want uint32
		err  error
	}{
		{cpid.MustMake(1, 5), 1, nil},
		{cpid.MustMake(2, 5), 2, nil},
		{cpid.MustMake(9, 5), 0, nil}, // not UP: a surrogate
		{0, 0, ErrInvalid},
	} {
		got, err := c.Route(tc.x)
		if !errors.Is(err, tc.err) || (tc.want != 0 && got != tc.want) || (tc.err == nil && got == 0) {
			t.Errorf("Route(%d) = %d, %v; want %d, %v", tc.x, got, err, tc.want, tc.err)
		}
		if tc.x == cpid.MustMake(9, 5) {
			if s, _ := Surrogate(9, []uint32{1, 2, 3}); got != s {
				t.Errorf("Route of a DOWN origin = %d, want its surrogate %d", got, s)
			}
		}
	}
	lone := New(Config{Self: 2})
	lone.Start(1, []uint32{2})
	if got, err := lone.Route(cpid.MustMake(1, 5)); got != 2 || err != nil {
		t.Errorf("Route with the origin DOWN and only this node UP = %d, %v; want itself", got, err)
	}
	none := New(Config{Self: 2})
	if _, err := none.Route(cpid.MustMake(1, 5)); !errors.Is(err, ErrNoNode) {
		t.Errorf("Route with no node UP = %v", err)
	}
}

func TestInvalid(t *testing.T) {
	c := New(Config{Self: 2})
	c.Start(1, []uint32{1, 2, 3})
	ok := Proc{CPID: cpid.MustMake(2, 10), Node: 3, PID: 7}
	for _, tc := range []struct {
		name string
		ev   Event
		err  error
	}{
		{"no cpid", Started{Proc: Proc{Node: 3, PID: 7}}, ErrInvalid},
		{"no node", Started{Proc: Proc{CPID: ok.CPID, PID: 7}}, ErrInvalid},
		{"node out of range", Started{Proc: Proc{CPID: ok.CPID, Node: 512, PID: 7}}, ErrInvalid},
		{"no pid", Started{Proc: Proc{CPID: ok.CPID, Node: 3}}, ErrInvalid},
		{"bad pgid", Started{Proc: Proc{CPID: ok.CPID, Node: 3, PID: 7, PGID: 5}}, ErrInvalid},
		{"bad sid", Started{Proc: Proc{CPID: ok.CPID, Node: 3, PID: 7, SID: -5}}, ErrInvalid},
		{"not ours", Started{Proc: Proc{CPID: cpid.MustMake(1, 10), Node: 3, PID: 7}}, ErrInvalid},
		{"on a node not UP", Started{Proc: Proc{CPID: ok.CPID, Node: 4, PID: 7}}, ErrDown},
		{"ok", Started{Proc: ok}, nil},
		{"again", Started{Proc: ok}, ErrInUse},
		{"a report from itself", Report{From: 2, Origin: 1}, ErrInvalid},
		{"a report of origin 0", Report{From: 3, Origin: 0}, ErrInvalid},
		{"a report of another origin's process", Report{From: 3, Origin: 1, Procs: []Proc{{CPID: cpid.MustMake(4, 1), Node: 3, PID: 1}}}, ErrInvalid},
		{"a report of a process elsewhere", Report{From: 3, Origin: 1, Procs: []Proc{{CPID: cpid.MustMake(1, 1), Node: 1, PID: 1}}}, ErrInvalid},
		{"an unknown event", nil, ErrInvalid},
	} {
		if err := c.Step(t0, tc.ev); !errors.Is(err, tc.err) {
			t.Errorf("%s: Step = %v, want %v", tc.name, err, tc.err)
		}
	}
	if c.HasReady() {
		t.Errorf("refused events left effects: %+v", c.Ready())
	}
}

func TestGroupResult(t *testing.T) {
	g := cpid.MustMake(1, 50)
	for _, tc := range []struct {
		signaled, denied int
		is               error
		msg              string
	}{
		{1, 3, nil, ""},
		{0, 2, syscall.EPERM, "pgroup: uid 1000 may not signal any process of group 4194354 (only their owner or root may): operation not permitted"},
		{0, 0, ErrUnknown, "pgroup: no process in group 4194354: no such process"},
	} {
		err := GroupResult(g, 1000, tc.signaled, tc.denied)
		if !errors.Is(err, tc.is) || (err != nil && err.Error() != tc.msg) {
			t.Errorf("GroupResult(%d, %d) = %v", tc.signaled, tc.denied, err)
		}
	}
}

// TestModel runs random executions, ends, node deaths and returns over
// an in-memory cluster (the survivors learning of a membership change at
// different times, messages flowing meanwhile) and checks after each step, once the messages are
// delivered and the surrogates' waits passed, that every live process is
// found from every UP node where it runs, that no node keeps a record of a
// process that is gone, and that no exec waits for a process that is lost
// without being ended with 255.
func TestModel(t *testing.T) {
	var exits, bySurrogate, handedBack int
	defer func() {
		if exits == 0 || bySurrogate == 0 || handedBack == 0 {
			t.Errorf("the model did not cover: %d execs ended, %d lookups answered by a surrogate, %d records handed back", exits, bySurrogate, handedBack)
		}
	}()
	for seed := range uint64(30) {
		r := rand.New(rand.NewPCG(seed, 7))
		c := newCluster()
		c.epoch = 1
		all := []uint32{1, 2, 3, 4, 5}
		for _, n := range all {
			c.cores[n] = New(Config{Self: n})
			c.cores[n].Start(1, all)
		}
		live := map[cpid.CPID]Proc{}
		nextPID := int32(100)
		for step := range 200 {
			up := c.up()
			var wantExits []cpid.CPID
			c.exits = nil
			switch k := r.IntN(10); {
			case k < 5 && len(up) > 0: // an exec
				o, on := up[r.IntN(len(up))], up[r.IntN(len(up))]
				nextPID++
				p := Proc{CPID: cpid.MustMake(o, nextPID), Node: on, PID: nextPID, UID: 1000, TTY: r.IntN(2) == 0, Detached: r.IntN(3) == 0}
				for _, n := range []uint32{o, on} {
					if err := c.cores[n].Step(c.now, Started{Proc: p}); err != nil {
						t.Fatalf("seed %d step %d: %v", seed, step, err)
					}
					if o == on {
						break
					}
				}
				p.PGID, p.SID = p.CPID, p.CPID
				live[p.CPID] = p
			case k < 7 && len(live) > 0: // an end
				xs := sortedKeys(live)
				x := xs[r.IntN(len(xs))]
				_ = c.cores[live[x].Node].Step(c.now, Ended{CPID: x, Node: live[x].Node})
				if o := x.Node(); c.cores[o] != nil && o != live[x].Node {
					_ = c.cores[o].Step(c.now, Ended{CPID: x, Node: live[x].Node})
				}
				delete(live, x)
			case k < 9 && len(up) > 2: // a death
				n := up[r.IntN(len(up))]
				for _, x := range sortedKeys(live) {
					if o := c.cores[x.Node()]; live[x].Node == n && x.Node() != n && o != nil && !o.origin[x].Detached {
						wantExits = append(wantExits, x)
					}
				}
				delete(c.cores, n)
				c.epoch++
				// The survivors learn it at different times: some
				// first, their messages delivered, then the others.
				rest := c.up()
				r.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
				split := r.IntN(len(rest) + 1)
				for i, m := range rest {
					if i == split {
						c.drain()
					}
					_ = c.cores[m].Step(c.now, NodeDown{Epoch: c.epoch, Node: n})
				}
				for x, p := range live {
					if p.Node == n {
						delete(live, x)
					}
				}
			default: // a return
				var down []uint32
				for _, n := range all {
					if c.cores[n] == nil {
						down = append(down, n)
					}
				}
				if len(down) == 0 {
					continue
				}
				n := down[r.IntN(len(down))]
				c.epoch++
				rest := c.up()
				c.cores[n] = New(Config{Self: n})
				c.cores[n].Start(c.epoch, append(slices.Clone(rest), n))
				r.Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
				split := r.IntN(len(rest) + 1)
				for i, m := range rest {
					if i == split {
						c.drain()
					}
					_ = c.cores[m].Step(c.now, NodeUp{Epoch: c.epoch, Node: n})
				}
			}
			c.drain()
			var got []cpid.CPID
			for _, e := range c.exits {
				if e.Status != 255 || e.Reason == "" {
					t.Fatalf("seed %d step %d: %+v", seed, step, e)
				}
				got = append(got, e.CPID)
			}
			slices.Sort(got)
			exits += len(got)
			if !slices.Equal(got, wantExits) {
				t.Fatalf("seed %d step %d: execs ended %v, want %v", seed, step, got, wantExits)
			}
			c.out.Reset()
			// Every live process is found from every UP node.
			for _, x := range sortedKeys(live) {
				for _, at := range c.up() {
					c.nextID++
					ev := Lookup{ID: c.nextID, CPID: x}
					c.requests[c.nextID] = ev
					_ = c.cores[at].Step(c.now, ev)
					c.drain()
					a, ok := c.answers[c.nextID]
					if !ok {
						for _, n := range c.up() {
							k := c.cores[n]
							t.Logf("n%d upEpoch %v downEpoch %v held %v awaited %v reported %v", n, k.upEpoch, k.downEpoch, k.held, k.awaited, k.reported)
						}
						t.Fatalf("seed %d step %d: lookup of %s at n%d unanswered:\n%s", seed, step, fc(x), at, c.out.String())
					}
					if !a.Found || a.Proc.Node != live[x].Node || a.Proc.PID != live[x].PID {
						t.Fatalf("seed %d step %d: lookup of %s (%s) at n%d: %+v\n%s", seed, step, fc(x), fp(live[x]), at, a, c.out.String())
					}
					c.out.Reset()
					if c.cores[x.Node()] == nil {
						bySurrogate++
					} else if c.cores[x.Node()].origin[x].Detached && !live[x].Detached {
						handedBack++
					}
				}
			}
			// No record outlives its process.
			for _, n := range c.up() {
				k := c.cores[n]
				for x, p := range k.origin {
					if _, ok := live[x]; !ok || c.cores[p.Node] == nil {
						t.Fatalf("seed %d step %d: n%d keeps %s", seed, step, n, fp(p))
					}
				}
				for x := range k.local {
					if _, ok := live[x]; !ok {
						t.Fatalf("seed %d step %d: n%d runs %s", seed, step, n, fc(x))
					}
				}
			}
		}
	}
}

func sortedKeys(m map[cpid.CPID]Proc) []cpid.CPID {
	var out []cpid.CPID
	for x := range m {
		out = append(out, x)
	}
	slices.Sort(out)
	return out
}
