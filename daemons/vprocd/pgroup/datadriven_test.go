package pgroup

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// TestScripts replays testdata/scripts/*.txt over an in-memory cluster of
// cores (cockroachdb/datadriven; rewrite the expectations with -rewrite).
// A cpid is written node.pid (1.100 is cpid.MustMake(1, 100)). After each
// command the messages the cores send are delivered until none is left
// (but with hold), and every core's effects are printed, by node:
//
//	start nodes=1,2,3
//	exec cpid=1.100 on=3 pid=77 [pgid=1.50] [sid=1.40] [uid=1000] [tty] [detached]
//	                        Started on the origin and on the node it runs on
//	end cpid=1.100 on=3     Ended on the node it ran on
//	down node=2 [hold]      NODEDOWN at every survivor (hold: keep the
//	                        messages sent from now on until deliver)
//	deliver | drop          deliver the held messages (and stop holding), or
//	                        lose them
//	up node=2               a new core on node 2, NODEUP at the others
//	lookup at=1 cpid=1.100  a Lookup at node 1, forwarded on redirects
//	kill at=1 uid=1000 target=1.100|-1.50 [sig=TERM]
//	                        a Kill of one process, forwarded on redirects;
//	                        of a group, at every UP node
//	tick d=2s               the clock moves, every core ticks
//	dump                    every core's tables
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/scripts", func(t *testing.T, path string) {
		c := newCluster()
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			return c.run(t, d)
		})
	})
}

type cluster struct {
	cores map[uint32]*Core
	epoch uint64
	now   time.Time
	queue []queued
	// holding: the messages wait in queue for deliver (or drop).
	holding bool
	nextID  uint64
	// requests are the lookups and kills by ID, to forward on a redirect.
	requests map[uint64]Event
	// answers are the final (not redirected) answers by ID.
	answers map[uint64]Answer
	exits   []Exit
	out     strings.Builder
}

func newCluster() *cluster {
	return &cluster{cores: map[uint32]*Core{}, now: t0, requests: map[uint64]Event{}, answers: map[uint64]Answer{}}
}

type queued struct {
	from uint32
	send Send
}

func arg(d *datadriven.TestData, key string) (string, bool) {
	for _, a := range d.CmdArgs {
		if a.Key == key {
			if len(a.Vals) == 0 {
				return "", true
			}
			return a.Vals[0], true
		}
	}
	return "", false
}

func must(t *testing.T, d *datadriven.TestData, key string) string {
	v, ok := arg(d, key)
	if !ok {
		d.Fatalf(t, "missing %s=", key)
	}
	return v
}

func node(t *testing.T, d *datadriven.TestData, key string) uint32 {
	n, err := strconv.ParseUint(must(t, d, key), 10, 32)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return uint32(n)
}

func parseC(s string) (cpid.CPID, error) {
	n, p, ok := strings.Cut(s, ".")
	if !ok {
		return 0, fmt.Errorf("cpid %q: want node.pid", s)
	}
	nn, err := strconv.ParseUint(n, 10, 32)
	if err != nil {
		return 0, err
	}
	pp, err := strconv.ParseInt(p, 10, 32)
	if err != nil {
		return 0, err
	}
	return cpid.Make(uint32(nn), int32(pp))
}

func cpidArg(t *testing.T, d *datadriven.TestData, key string) cpid.CPID {
	v, ok := arg(d, key)
	if !ok {
		return 0
	}
	c, err := parseC(v)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return c
}

func fc(c cpid.CPID) string {
	if c == 0 {
		return "0"
	}
	return fmt.Sprintf("%d.%d", c.Node(), c.PID())
}

func fp(p Proc) string {
	s := fmt.Sprintf("%s@%d/%d pg=%s sid=%s uid=%d", fc(p.CPID), p.Node, p.PID, fc(p.PGID), fc(p.SID), p.UID)
	if p.TTY {
		s += " tty"
	}
	if p.Detached {
		s += " detached"
	}
	return s
}

var sigNames = map[string]syscall.Signal{"HUP": syscall.SIGHUP, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT, "KILL": syscall.SIGKILL, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1, "STOP": syscall.SIGSTOP}

func sigName(s syscall.Signal) string {
	for n, v := range sigNames {
		if v == s {
			return n
		}
	}
	return strconv.Itoa(int(s))
}

func (c *cluster) up() []uint32 { return slices.Sorted(maps.Keys(c.cores)) }

func (c *cluster) printf(format string, args ...any) { fmt.Fprintf(&c.out, format+"\n", args...) }

func (c *cluster) run(t *testing.T, d *datadriven.TestData) string {
	c.out.Reset()
	switch d.Cmd {
	case "start":
		c.epoch = 1
		var up []uint32
		for _, s := range strings.Split(must(t, d, "nodes"), ",") {
			n, _ := strconv.ParseUint(s, 10, 32)
			up = append(up, uint32(n))
		}
		for _, n := range up {
			c.cores[n] = New(Config{Self: n})
			c.cores[n].Start(c.epoch, up)
		}
	case "exec":
		p := Proc{CPID: cpidArg(t, d, "cpid"), Node: node(t, d, "on"), PGID: cpidArg(t, d, "pgid"), SID: cpidArg(t, d, "sid")}
		pid, _ := strconv.ParseInt(must(t, d, "pid"), 10, 32)
		p.PID = int32(pid)
		if v, ok := arg(d, "uid"); ok {
			u, _ := strconv.ParseUint(v, 10, 32)
			p.UID = uint32(u)
		}
		_, p.TTY = arg(d, "tty")
		_, p.Detached = arg(d, "detached")
		nodes := []uint32{p.CPID.Node()}
		if p.Node != p.CPID.Node() {
			nodes = append(nodes, p.Node)
		}
		for _, n := range nodes {
			if k := c.cores[n]; k != nil {
				if err := k.Step(c.now, Started{Proc: p}); err != nil {
					c.printf("n%d: error: %v", n, err)
				}
			}
		}
	case "end":
		n := node(t, d, "on")
		if err := c.cores[n].Step(c.now, Ended{CPID: cpidArg(t, d, "cpid"), Node: n}); err != nil {
			c.printf("n%d: error: %v", n, err)
		}
	case "down":
		n := node(t, d, "node")
		_, c.holding = arg(d, "hold")
		delete(c.cores, n)
		c.epoch++
		for _, m := range c.up() {
			_ = c.cores[m].Step(c.now, NodeDown{Epoch: c.epoch, Node: n})
		}
	case "up":
		n := node(t, d, "node")
		c.epoch++
		for _, m := range c.up() {
			_ = c.cores[m].Step(c.now, NodeUp{Epoch: c.epoch, Node: n})
		}
		c.cores[n] = New(Config{Self: n})
		c.cores[n].Start(c.epoch, append(c.up(), n))
	case "lookup", "kill":
		at := node(t, d, "at")
		c.nextID++
		var ev Event
		if d.Cmd == "lookup" {
			ev = Lookup{ID: c.nextID, CPID: cpidArg(t, d, "cpid")}
		} else {
			tg := must(t, d, "target")
			k := Kill{ID: c.nextID, Signal: syscall.SIGTERM, Target: cpid.Target{Group: strings.HasPrefix(tg, "-")}}
			x, err := parseC(strings.TrimPrefix(tg, "-"))
			if err != nil {
				d.Fatalf(t, "target: %v", err)
			}
			k.Target.ID = x
			if v, ok := arg(d, "uid"); ok {
				u, _ := strconv.ParseUint(v, 10, 32)
				k.Caller = uint32(u)
			}
			if v, ok := arg(d, "sig"); ok {
				k.Signal = sigNames[v]
			}
			if k.Target.Group {
				for _, m := range c.up() {
					_ = c.cores[m].Step(c.now, k)
				}
				break
			}
			ev = k
		}
		c.requests[c.nextID] = ev
		_ = c.cores[at].Step(c.now, ev)
	case "tick":
		dd, err := time.ParseDuration(must(t, d, "d"))
		if err != nil {
			d.Fatalf(t, "d: %v", err)
		}
		c.now = c.now.Add(dd)
		for _, m := range c.up() {
			c.cores[m].Tick(c.now)
		}
	case "deliver":
		c.holding = false
	case "drop":
		for _, m := range c.queue {
			c.printf("(n%d -> n%d dropped)", m.from, m.send.To)
		}
		c.queue = nil
	case "dump":
		for _, n := range c.up() {
			k := c.cores[n]
			for _, x := range slices.Sorted(maps.Keys(k.origin)) {
				c.printf("n%d origin %s", n, fp(k.origin[x]))
			}
			for _, x := range slices.Sorted(maps.Keys(k.local)) {
				c.printf("n%d local %s", n, fp(k.local[x]))
			}
			for _, o := range slices.Sorted(maps.Keys(k.held)) {
				for _, h := range slices.Sorted(maps.Keys(k.held[o])) {
					var ps []string
					for _, p := range k.held[o][h].procs {
						ps = append(ps, fp(p))
					}
					c.printf("n%d held origin %d from %d: [%s]", n, o, h, strings.Join(ps, ", "))
				}
			}
			for _, o := range slices.Sorted(maps.Keys(k.awaited)) {
				if aw := k.awaited[o]; len(aw) > 0 {
					c.printf("n%d awaits for origin %d: %v", n, o, slices.Sorted(maps.Keys(aw)))
				}
			}
			for _, o := range slices.Sorted(maps.Keys(k.pending)) {
				c.printf("n%d holds %d request(s) for origin %d", n, len(k.pending[o]), o)
			}
		}
		return c.out.String()
	default:
		d.Fatalf(t, "unknown command %s", d.Cmd)
	}
	c.drain()
	if c.out.Len() == 0 {
		return "ok\n"
	}
	return c.out.String()
}

// drain prints every core's effects, delivers the messages and forwards
// redirected requests, until nothing is left.
func (c *cluster) drain() {
	for round := 0; ; round++ {
		if round > 100 {
			panic("no quiescence")
		}
		any := false
		for _, n := range c.up() {
			k := c.cores[n]
			if !k.HasReady() {
				continue
			}
			any = true
			rd := k.Ready()
			for _, s := range rd.Sends {
				c.queue = append(c.queue, queued{from: n, send: s})
				if s.Report != nil {
					var ps []string
					for _, p := range s.Report.Procs {
						ps = append(ps, fp(p))
					}
					c.printf("n%d -> n%d: report origin %d epoch %d [%s]", n, s.To, s.Report.Origin, s.Report.Epoch, strings.Join(ps, ", "))
				} else {
					c.printf("n%d -> n%d: ended %s on %d", n, s.To, fc(s.Ended.CPID), s.Ended.Node)
				}
			}
			for _, s := range rd.Signals {
				g := ""
				if s.Group {
					g = " group"
				}
				c.printf("n%d: signal %s on n%d pid %d%s (%s, by uid %d)", n, sigName(s.Signal), s.Node, s.PID, g, fc(s.CPID), s.Caller)
			}
			c.exits = append(c.exits, rd.Exits...)
			for _, e := range rd.Exits {
				c.printf("n%d: exit %s status %d: %s", n, fc(e.CPID), e.Status, e.Reason)
			}
			for _, a := range rd.Answers {
				c.answer(n, a)
			}
		}
		if !c.holding && len(c.queue) > 0 {
			q := c.queue
			c.queue = nil
			for _, m := range q {
				k := c.cores[m.send.To]
				if k == nil {
					c.printf("(n%d -> n%d lost: down)", m.from, m.send.To)
					continue
				}
				var err error
				if m.send.Report != nil {
					err = k.Step(c.now, *m.send.Report)
				} else {
					err = k.Step(c.now, *m.send.Ended)
				}
				if err != nil {
					c.printf("n%d: error: %v", m.send.To, err)
				}
			}
			any = true
		}
		if !any {
			return
		}
	}
}

func (c *cluster) answer(n uint32, a Answer) {
	s := fmt.Sprintf("n%d: answer #%d", n, a.ID)
	switch {
	case a.Redirect != 0:
		s += fmt.Sprintf(" redirect n%d", a.Redirect)
	case a.Found:
		s += " found " + fp(a.Proc)
	case a.Local:
		s += " local"
	}
	if a.Signaled > 0 || a.Denied > 0 {
		s += fmt.Sprintf(" signaled %d denied %d", a.Signaled, a.Denied)
	}
	if a.Err != nil {
		s += " error: " + a.Err.Error()
	}
	c.printf("%s", s)
	if a.Redirect == 0 {
		c.answers[a.ID] = a
	}
	if a.Redirect != 0 {
		if ev, ok := c.lastRequest(a.ID); ok && c.cores[a.Redirect] != nil {
			_ = c.cores[a.Redirect].Step(c.now, ev)
		}
	}
}

func (c *cluster) lastRequest(id uint64) (Event, bool) {
	ev, ok := c.requests[id]
	return ev, ok
}
