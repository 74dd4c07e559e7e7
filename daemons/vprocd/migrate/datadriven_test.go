package migrate

import (
	"errors"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// TestScripts replays testdata/scripts/*.txt (cockroachdb/datadriven;
// rewrite the expectations with -rewrite) on an in-memory world of Nodes
// (network_test.go) with a fake clock. Each command prints what the
// nodes did to process copies, where arbiters located processes, how
// moves ended and, for deliveries, the messages; after each, no process
// runs in two places. Commands (n= a node):
//
//	start nodes=3 [confirm=30s] [retry=1s]  boot a cluster, all UP
//	proc cpid=101 origin=1 at=1             a process running at a node
//	migrate n=1 cpid=101 to=2 [mech=coop]   start a move at its source
//	frozen n=1 [fail=why]                   end n's oldest freeze job
//	restored n=2 [fail=why]                 end n's oldest restore job
//	deliver [from=1] [to=2] [count=1]       deliver the next messages
//	stabilize                               deliver until none is in flight
//	drop [from=1] [to=2] [count=1]          lose messages in flight
//	queue                                   list the messages in flight
//	tick [d=1s]                             move the clock, ticking all
//	cut a=1 b=2 | heal                      cut a link (messages on it are
//	                                        lost), mend every link
//	crash n=2 | restart n=2                 kill a node (its process copies
//	                                        too); start a new vprocd
//	down n=2 | up n=2                       clmsd's view: a new epoch
//	procs                                   every process's copies
//	settle                                  heal, restart, bring UP and run
//	                                        everything out; then every
//	                                        process runs exactly once (or
//	                                        was lost with a crashed node)
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/scripts", func(t *testing.T, path string) {
		var w *world
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "start" && w == nil {
				d.Fatalf(t, "start first")
			}
			if w != nil {
				w.out.Reset()
			}
			switch d.Cmd {
			case "start":
				cfg := Config{ConfirmTimeout: durArg(t, d, "confirm", 0), Retry: durArg(t, d, "retry", 0)}
				w = newWorld(t, intArg(t, d, "nodes", 3), cfg)
				w.out.Reset()
			case "proc":
				w.addProc(uint64(intArg(t, d, "cpid", 0)), node(t, d, "origin"), node(t, d, "at"))
			case "migrate":
				n := w.nodes[node(t, d, "n")]
				mech := CRIU
				if strArg(d, "mech") == "coop" {
					mech = Cooperative
				}
				cpid := uint64(intArg(t, d, "cpid", 0))
				p := w.procs[cpid]
				if p == nil {
					d.Fatalf(t, "no process %d", cpid)
				}
				mv, err := n.n.Migrate(w.now, cpid, p.origin, node(t, d, "to"), mech)
				if err != nil {
					w.logf("n%d: %v", n.id, err)
				} else {
					w.logf("n%d: move %s cpid=%d to n%d (%s)", n.id, mv.ID, cpid, mv.Target, mv.Mech)
				}
				w.collect(n)
			case "frozen", "restored":
				kind := Freeze
				if d.Cmd == "restored" {
					kind = Restore
				}
				i := w.nextJob(node(t, d, "n"), kind)
				if i < 0 {
					d.Fatalf(t, "no %s job on n%d", kind, node(t, d, "n"))
				}
				var err error
				if why := strArg(d, "fail"); why != "" {
					err = errors.New(why)
				}
				w.finish(i, err)
			case "deliver":
				w.trace = true
				count := intArg(t, d, "count", 1)
				for range count {
					i := w.next(nodeOr(t, d, "from"), nodeOr(t, d, "to"))
					if i < 0 {
						break
					}
					w.deliverAt(i)
				}
				w.trace = false
			case "stabilize":
				w.trace = true
				for len(w.queue) > 0 {
					w.deliverAt(0)
				}
				w.trace = false
			case "drop":
				count := intArg(t, d, "count", len(w.queue))
				for range count {
					i := w.next(nodeOr(t, d, "from"), nodeOr(t, d, "to"))
					if i < 0 {
						break
					}
					w.logf("dropped: %s", w.queue[i].msg)
					w.queue = append(w.queue[:i:i], w.queue[i+1:]...)
				}
			case "queue":
				for _, e := range w.queue {
					w.logf("%s", e.msg)
				}
			case "tick":
				w.tick(durArg(t, d, "d", time.Second))
			case "cut":
				a, b := node(t, d, "a"), node(t, d, "b")
				if a > b {
					a, b = b, a
				}
				w.cut[[2]uint32{a, b}] = true
			case "heal":
				w.cut = map[[2]uint32]bool{}
			case "crash":
				w.crash(node(t, d, "n"))
			case "restart":
				w.restart(node(t, d, "n"))
			case "down":
				w.setUp(node(t, d, "n"), false)
			case "up":
				w.setUp(node(t, d, "n"), true)
			case "procs":
				cpids := make([]uint64, 0, len(w.procs))
				for c := range w.procs {
					cpids = append(cpids, c)
				}
				sort.Slice(cpids, func(i, j int) bool { return cpids[i] < cpids[j] })
				for _, c := range cpids {
					w.logf("cpid=%d: %s", c, w.procs[c].describe())
				}
			case "settle":
				w.settle()
				w.checkSettled()
				w.logf("settled")
			default:
				d.Fatalf(t, "unknown command %q", d.Cmd)
			}
			w.check()
			return w.out.String()
		})
	})
}

func strArg(d *datadriven.TestData, key string) string {
	for _, a := range d.CmdArgs {
		if a.Key == key && len(a.Vals) > 0 {
			return a.Vals[0]
		}
	}
	return ""
}

func intArg(t *testing.T, d *datadriven.TestData, key string, def int) int {
	s := strArg(d, key)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return v
}

func durArg(t *testing.T, d *datadriven.TestData, key string, def time.Duration) time.Duration {
	s := strArg(d, key)
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return v
}

func node(t *testing.T, d *datadriven.TestData, key string) uint32 {
	v := intArg(t, d, key, 0)
	if v <= 0 {
		d.Fatalf(t, "%s= is required", key)
	}
	return uint32(v)
}

func nodeOr(t *testing.T, d *datadriven.TestData, key string) uint32 {
	return uint32(intArg(t, d, key, 0))
}
