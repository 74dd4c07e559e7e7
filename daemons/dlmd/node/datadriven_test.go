package node

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// TestScripts replays testdata/scripts/*.txt (cockroachdb/datadriven;
// rewrite the expectations with -rewrite) on an in-memory network of
// Nodes (network_test.go) with a fake clock. Each command prints what
// the nodes logged (Info and above) and told their sessions; after each,
// every node's Check runs and no two clients may hold incompatible
// granted locks. Commands (n= a node, s= a session of it, lists as 1,2):
//
//	start nodes=3 [lease=1s] [toss=10s]  boot a cluster, all UP at epoch 1
//	      [lease3=3s]                  (node 3's dlmd.lease differs)
//	      [locks=2] [uidlocks=3] [pending=1] [uidpending=2]  the limits
//	open n=1 [uid=1000]                open a session (prints its id)
//	lock n=1 s=1 [tag=1] r=res m=EX [ls=ls] [f=PERSISTENT|VALBLK|NOQUEUE|...] [t=5s] [inreply]
//	convert n=1 s=1 [tag=] id=1 m=NL [f=VALBLK] [lvb=text]
//	unlock n=1 s=1 [tag=] id=1 [f=VALBLK] [lvb=text]
//	cancel n=1 s=1 [tag=] id=1
//	close n=1 s=1                      the session ends (its client exited)
//	purge n=1 [ls=ls] [pid=0]          release this node's orphans
//	stabilize [trace]                  deliver until nothing can be
//	deliver from=1 to=2 [count=1]      deliver the next messages between
//	                                   two nodes (always traced)
//	drop from=1 to=2 [count=all]       lose messages in flight
//	queue                              list the messages in flight
//	tick [d=20ms]                      move the clock, pinging and ticking
//	                                   every 20ms; messages stay queued
//	run [d=20ms]                       the same, delivering after each tick
//	partition n=3 | cut a=1 b=2 | heal  cut a node off, or a pair; mend
//	down n=3 [at=1,2]                  clmsd: node 3 DOWN (a new epoch),
//	                                   told to the nodes at (default: the
//	                                   running ones but n)
//	up n=3 [at=...]                    clmsd: node 3 UP (a new epoch)
//	crash n=2 | restart n=2            kill a dlmd; start a new one
//	leave n=2                          a stopping dlmd says goodbye
//	set-route n=1 r=res to=3 [ls=ls]   make node 1 believe 3 masters res
//	dump [ls=ls]                       every node's master tables
//	copies n=1                         a node's copies of its clients' locks
//	routes n=1                         what a node masters and knows
//	status                             each node's directory, recovery, lease
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/scripts", func(t *testing.T, path string) {
		var nw *network
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd != "start" && nw == nil {
				d.Fatalf(t, "start first")
			}
			if nw != nil {
				nw.t = t
			}
			nw = runCommand(t, d, nw)
			if err := nw.checkSafety(); err != nil {
				d.Fatalf(t, "after %s: %v\n%s", d.Cmd, err, nw.out.String())
			}
			out := nw.out.String()
			nw.out.Reset()
			if out == "" {
				return "ok\n"
			}
			return out
		})
	})
}

func darg(d *datadriven.TestData, key string) (string, bool) {
	a, ok := d.Arg(key)
	if !ok {
		return "", false
	}
	if len(a.Vals) == 0 {
		return "", true
	}
	return strings.Join(a.Vals, ","), true
}

func dnum(t *testing.T, d *datadriven.TestData, key string, def uint64) uint64 {
	v, ok := darg(d, key)
	if !ok {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return n
}

func dmust(t *testing.T, d *datadriven.TestData, key string) uint64 {
	if _, ok := darg(d, key); !ok {
		d.Fatalf(t, "missing %s=", key)
	}
	return dnum(t, d, key, 0)
}

func ddur(t *testing.T, d *datadriven.TestData, key string, def time.Duration) time.Duration {
	v, ok := darg(d, key)
	if !ok {
		return def
	}
	dur, err := time.ParseDuration(v)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return dur
}

func dnodes(t *testing.T, d *datadriven.TestData, key string) ([]uint32, bool) {
	v, ok := darg(d, key)
	if !ok {
		return nil, false
	}
	var out []uint32
	for _, p := range strings.Split(v, ",") {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			d.Fatalf(t, "%s: %v", key, err)
		}
		out = append(out, uint32(n))
	}
	return out, true
}

var scriptFlags = map[string]lockspace.Flags{"NOQUEUE": lockspace.NoQueue, "VALBLK": lockspace.ValBlk, "QUECVT": lockspace.QueCvt,
	"PERSISTENT": lockspace.Persistent, "EXPEDITE": lockspace.Expedite, "INVVALBLK": lockspace.InvalidateLVB}

func dflags(t *testing.T, d *datadriven.TestData) uint32 {
	v, ok := darg(d, "f")
	if !ok || v == "" {
		return 0
	}
	var f lockspace.Flags
	for _, p := range strings.Split(v, "|") {
		x, ok := scriptFlags[p]
		if !ok {
			d.Fatalf(t, "unknown flag %q", p)
		}
		f |= x
	}
	return uint32(f)
}

func dmode(t *testing.T, d *datadriven.TestData) dlmv1.Mode {
	v, _ := darg(d, "m")
	m, err := lockspace.ParseMode(v)
	if err != nil {
		d.Fatalf(t, "%v", err)
	}
	return pmode(m)
}

func dls(d *datadriven.TestData) string {
	if v, ok := darg(d, "ls"); ok {
		return v
	}
	return "ls"
}

func dlvb(d *datadriven.TestData) []byte {
	if v, ok := darg(d, "lvb"); ok {
		return []byte(v)
	}
	return nil
}

func (nw *network) member(t *testing.T, d *datadriven.TestData, key string) *member {
	id := uint32(dmust(t, d, key))
	m := nw.nodes[id]
	if m == nil {
		d.Fatalf(t, "no node %d", id)
	}
	return m
}

func (nw *network) running(t *testing.T, d *datadriven.TestData) *member {
	m := nw.member(t, d, "n")
	if !m.running {
		d.Fatalf(t, "node %d is not running", m.id)
	}
	return m
}

func runCommand(t *testing.T, d *datadriven.TestData, nw *network) *network {
	switch d.Cmd {
	case "start":
		leases := map[uint32]time.Duration{}
		for _, a := range d.CmdArgs {
			if id, ok := strings.CutPrefix(a.Key, "lease"); ok && id != "" {
				n, err := strconv.ParseUint(id, 10, 32)
				if err != nil {
					d.Fatalf(t, "%s: not lease<node>", a.Key)
				}
				leases[uint32(n)] = ddur(t, d, a.Key, 0)
			}
		}
		nw := newNetwork(t, int(dmust(t, d, "nodes")), ddur(t, d, "lease", time.Second), ddur(t, d, "toss", 10*time.Second), leases)
		nw.limits = Limits{LocksPerSession: int(dnum(t, d, "locks", 0)), LocksPerUID: int(dnum(t, d, "uidlocks", 0)),
			PendingPerSession: int(dnum(t, d, "pending", 0)), PendingPerUID: int(dnum(t, d, "uidpending", 0))}
		for _, m := range nw.nodes {
			m.n.cfg.Limits = nw.limits
		}
		return nw
	case "open":
		m := nw.running(t, d)
		uid := uint32(dnum(t, d, "uid", 1000))
		id := m.n.OpenSession(nw.now, int32(100+len(m.n.sessions)), lockspace.Cred{UID: uid, GID: 1000})
		fmt.Fprintf(&nw.out, "n%d.s%d\n", m.id, id)
	case "lock":
		m := nw.running(t, d)
		r, _ := darg(d, "r")
		_, inReply := d.Arg("inreply")
		m.n.Lock(nw.now, dmust(t, d, "s"), dnum(t, d, "tag", 0), lockspace.Config{UID: 1000, GID: 1000}, &dlmv1.LockRequest{
			Lockspace: dls(d), Resource: []byte(r), Mode: dmode(t, d), Flags: dflags(t, d),
			TimeoutNanos: int64(ddur(t, d, "t", 0)), CompletionInReply: inReply})
		nw.collect(m)
	case "convert":
		m := nw.running(t, d)
		_, inReply := d.Arg("inreply")
		m.n.Convert(nw.now, dmust(t, d, "s"), dnum(t, d, "tag", 0), &dlmv1.ConvertRequest{LockId: dmust(t, d, "id"),
			Mode: dmode(t, d), Flags: dflags(t, d), TimeoutNanos: int64(ddur(t, d, "t", 0)), Lvb: dlvb(d), CompletionInReply: inReply})
		nw.collect(m)
	case "unlock":
		m := nw.running(t, d)
		m.n.Unlock(nw.now, dmust(t, d, "s"), dnum(t, d, "tag", 0), &dlmv1.UnlockRequest{LockId: dmust(t, d, "id"),
			Flags: dflags(t, d), Lvb: dlvb(d)})
		nw.collect(m)
	case "cancel":
		m := nw.running(t, d)
		m.n.Cancel(nw.now, dmust(t, d, "s"), dnum(t, d, "tag", 0), &dlmv1.CancelRequest{LockId: dmust(t, d, "id")})
		nw.collect(m)
	case "close":
		m := nw.running(t, d)
		m.n.CloseSession(nw.now, dmust(t, d, "s"))
		nw.collect(m)
	case "purge":
		m := nw.running(t, d)
		n := m.n.Purge(nw.now, dls(d), int32(dnum(t, d, "pid", 0)), uint32(dnum(t, d, "uid", 0)))
		fmt.Fprintf(&nw.out, "released %d\n", n)
		nw.collect(m)
	case "stabilize":
		_, trace := d.Arg("trace")
		nw.stabilize(trace)
	case "deliver":
		from, to := uint32(dmust(t, d, "from")), uint32(dmust(t, d, "to"))
		for range dnum(t, d, "count", 1) {
			i := nw.next(from, to)
			if i < 0 {
				fmt.Fprintf(&nw.out, "nothing to deliver from %d to %d\n", from, to)
				break
			}
			nw.deliver(i, true)
		}
	case "drop":
		from, to := uint32(dmust(t, d, "from")), uint32(dmust(t, d, "to"))
		count := dnum(t, d, "count", uint64(len(nw.queue)))
		nw.queue = slices.DeleteFunc(nw.queue, func(e envelope) bool {
			if e.from != from || e.to != to || count == 0 {
				return false
			}
			count--
			fmt.Fprintf(&nw.out, "dropped %d->%d %s\n", e.from, e.to, describe(e.msg))
			return true
		})
	case "queue":
		for _, e := range nw.queue {
			fmt.Fprintf(&nw.out, "%d->%d %s\n", e.from, e.to, describe(e.msg))
		}
	case "tick", "run":
		end := nw.now.Add(ddur(t, d, "d", netTick))
		for nw.now.Before(end) {
			nw.step()
			if d.Cmd == "run" {
				nw.stabilize(false)
			}
		}
	case "partition":
		m := nw.member(t, d, "n")
		for _, o := range nw.sorted() {
			if o.id != m.id {
				nw.cut[pair(m.id, o.id)] = true
			}
		}
	case "cut":
		nw.cut[pair(uint32(dmust(t, d, "a")), uint32(dmust(t, d, "b")))] = true
	case "heal":
		nw.cut = map[[2]uint32]bool{}
	case "down", "up":
		m := nw.member(t, d, "n")
		nw.epoch++
		nw.up[m.id] = d.Cmd == "up"
		at, ok := dnodes(t, d, "at")
		if !ok {
			for _, o := range nw.sorted() {
				if o.running && (o.id != m.id || d.Cmd == "up") {
					at = append(at, o.id)
				}
			}
		}
		for _, id := range at {
			if o := nw.nodes[id]; o != nil && o.running {
				o.n.Membership(nw.now, nw.epoch, m.id, d.Cmd == "up")
				nw.collect(o)
			}
		}
	case "crash":
		m := nw.running(t, d)
		m.running = false
		nw.queue = slices.DeleteFunc(nw.queue, func(e envelope) bool { return e.from == m.id })
	case "restart":
		m := nw.member(t, d, "n")
		if m.running {
			d.Fatalf(t, "node %d is running", m.id)
		}
		nw.boot(m.id, m.n.Incarnation()+1000)
	case "leave":
		m := nw.running(t, d)
		m.n.Leave(nw.now)
		nw.collect(m)
	case "set-route":
		m := nw.running(t, d)
		r, _ := darg(d, "r")
		m.n.learnRoute(directory.Key{Lockspace: dls(d), Resource: r}, uint32(dmust(t, d, "to")), nw.now)
	case "dump":
		ls, _ := darg(d, "ls")
		for _, m := range nw.sorted() {
			if !m.running {
				continue
			}
			for _, r := range m.n.Dump(ls) {
				fmt.Fprintf(&nw.out, "n%d masters %s/%s", m.id, r.Lockspace, r.Name)
				if r.LvbValid {
					fmt.Fprintf(&nw.out, " lvb=%q", strings.TrimRight(string(r.Lvb), "\x00"))
				}
				nw.out.WriteByte('\n')
				for _, l := range r.Locks {
					fmt.Fprintf(&nw.out, "  %d.%d#%d %s", l.Node, l.Client, l.Id, lockspace.LockState(l.State))
					if l.State != dlmv1.LockState(lockspace.StateWaiting) {
						fmt.Fprintf(&nw.out, " %v", mode(l.Granted))
					}
					if l.State != dlmv1.LockState(lockspace.StateGranted) {
						fmt.Fprintf(&nw.out, " ->%v", mode(l.Requested))
					}
					if f := lockspace.Flags(l.Flags); f != 0 {
						fmt.Fprintf(&nw.out, " %v", f)
					}
					if l.Orphan {
						nw.out.WriteString(" orphan")
					}
					nw.out.WriteByte('\n')
				}
			}
		}
	case "copies":
		m := nw.running(t, d)
		ids := make([]lockspace.LockID, 0, len(m.n.locks))
		for id := range m.n.locks {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			cl := m.n.locks[id]
			fmt.Fprintf(&nw.out, "#%d %s/%s %v", id, cl.ls, cl.res, cl.state)
			if cl.state != lockspace.StateWaiting {
				fmt.Fprintf(&nw.out, " %v", cl.gr)
			}
			if cl.state != lockspace.StateGranted {
				fmt.Fprintf(&nw.out, " ->%v", cl.rq)
			}
			fmt.Fprintf(&nw.out, " master=%d", cl.master)
			if cl.persistent {
				nw.out.WriteString(" persistent")
			}
			if cl.orphan {
				nw.out.WriteString(" orphan")
			}
			if cl.hasLVB {
				fmt.Fprintf(&nw.out, " lvb=%q", strings.TrimRight(string(cl.lvb[:]), "\x00"))
				if !cl.lvbValid {
					nw.out.WriteString(" invalid")
				}
			}
			nw.out.WriteByte('\n')
		}
	case "routes":
		m := nw.running(t, d)
		var ms, rs []string
		for k := range m.n.mastered {
			ms = append(ms, k.Lockspace+"/"+k.Resource)
		}
		for k, r := range m.n.routes {
			rs = append(rs, fmt.Sprintf("%s/%s->%d", k.Lockspace, k.Resource, r.node))
		}
		slices.Sort(ms)
		slices.Sort(rs)
		fmt.Fprintf(&nw.out, "mastered: %s\nroutes: %s\n", strings.Join(ms, " "), strings.Join(rs, " "))
	case "status":
		for _, m := range nw.sorted() {
			if !m.running {
				fmt.Fprintf(&nw.out, "n%d: stopped\n", m.id)
				continue
			}
			n := m.n
			fmt.Fprintf(&nw.out, "n%d: inc=%d", m.id, n.cfg.Incarnation)
			if n.haveLast {
				fmt.Fprintf(&nw.out, " installed=%s dir=%v", n.last.ID, n.dir)
			}
			if n.rec != nil {
				fmt.Fprintf(&nw.out, " recovering=%s", n.rec.id)
				if n.rec.waiting {
					nw.out.WriteString(" (waiting for leases)")
				}
			}
			fmt.Fprintf(&nw.out, " lease=%v", n.leaseHeld())
			if len(n.gone) > 0 {
				fmt.Fprintf(&nw.out, " gone=%v", sortedNodes(n.gone))
			}
			nw.out.WriteByte('\n')
		}
	default:
		d.Fatalf(t, "unknown command %q", d.Cmd)
	}
	return nw
}

func pair(a, b uint32) [2]uint32 {
	if a > b {
		a, b = b, a
	}
	return [2]uint32{a, b}
}
