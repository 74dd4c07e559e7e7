package lockspace

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

var root = Cred{}

// TestScripts replays testdata/scripts/*.txt (cockroachdb/datadriven; rewrite
// the expectations with -rewrite). Commands (arguments in brackets are
// optional; o= is an owner node.client; every command runs Check after):
//
//	new [name=ls] [uid=1000] [gid=1000] [system] [by-uid=0] [by-gid=0] [groups=1|2]
//	lock o=1.1 id=1 r=res m=EX [f=NOQUEUE|VALBLK|...] [t=5s] [uid=] [gid=] [ls=]
//	convert o=1.1 id=1 m=NL [f=...] [t=5s] [lvb=text] [r=res]
//	unlock o=1.1 id=1 [f=VALBLK] [lvb=text]
//	cancel o=1.1 id=1
//	tick d=5s                 advance the clock by d, then Tick
//	exit o=1.1 | purge o=1.1 | drop node=2
//	deadlock                  DetectDeadlocks on the current lockspace
//	global-deadlock           FindVictims over the merged WaitEdges of all
//	                          lockspaces, applied to each (cross-master)
//	edges | dump | next-deadline
//	rebuild dead=2 [floor=N]  a new master rebuilds every resource from the
//	                          copies of the locks of every node but 2, its
//	                          token counters raised to N first
//	token r=res | raise-token r=res floor=N | forget-token r=res
//	use name=ls               make a lockspace current
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/scripts", func(t *testing.T, path string) {
		s := &script{spaces: map[string]*Lockspace{}, now: t0}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			out := s.run(t, d)
			for name, ls := range s.spaces {
				if err := ls.Check(); err != nil {
					t.Fatalf("%s: %s: invariant: %v", d.Pos, name, err)
				}
			}
			return out
		})
	})
}

type script struct {
	spaces map[string]*Lockspace
	order  []string
	cur    string
	now    time.Time
}

func arg(d *datadriven.TestData, key string) (string, bool) {
	a, ok := d.Arg(key)
	if !ok {
		return "", false
	}
	if len(a.Vals) == 0 {
		return "", true
	}
	return a.Vals[0], true
}

func must(t *testing.T, d *datadriven.TestData, key string) string {
	v, ok := arg(d, key)
	if !ok {
		d.Fatalf(t, "missing %s=", key)
	}
	return v
}

func num(t *testing.T, d *datadriven.TestData, key string, def uint64) uint64 {
	v, ok := arg(d, key)
	if !ok {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		d.Fatalf(t, "%s: %v", key, err)
	}
	return n
}

func parseOwner(s string) (Owner, error) {
	n, c, ok := strings.Cut(s, ".")
	if !ok {
		return Owner{}, fmt.Errorf("owner %q: want node.client", s)
	}
	nn, err := strconv.ParseUint(n, 10, 32)
	if err != nil {
		return Owner{}, err
	}
	cc, err := strconv.ParseUint(c, 10, 64)
	if err != nil {
		return Owner{}, err
	}
	return Owner{NodeID(nn), cc}, nil
}

func parseFlags(s string) (Flags, error) {
	var f Flags
	if s == "" {
		return 0, nil
	}
	for _, p := range strings.Split(s, "|") {
		i := indexOf(flagNames, p)
		if i < 0 {
			return 0, fmt.Errorf("unknown flag %q", p)
		}
		f |= 1 << i
	}
	return f, nil
}

func indexOf(xs []string, x string) int {
	for i, y := range xs {
		if y == x {
			return i
		}
	}
	return -1
}

func (s *script) ls(t *testing.T, d *datadriven.TestData) *Lockspace {
	name := s.cur
	if v, ok := arg(d, "ls"); ok {
		name = v
	}
	if s.spaces[name] == nil {
		if name != "" || len(s.spaces) > 0 {
			d.Fatalf(t, "no lockspace %q", name)
		}
		ls, err := New("default", Config{UID: 1000, GID: 1000}, root)
		if err != nil {
			t.Fatal(err)
		}
		s.spaces[""], s.order = ls, append(s.order, "")
	}
	return s.spaces[name]
}

func (s *script) request(t *testing.T, d *datadriven.TestData) Request {
	o, err := parseOwner(must(t, d, "o"))
	if err != nil {
		d.Fatalf(t, "%v", err)
	}
	r := Request{Owner: o, ID: LockID(num(t, d, "id", 1))}
	r.Resource, _ = arg(d, "r")
	if m, ok := arg(d, "m"); ok {
		if r.Mode, err = ParseMode(m); err != nil && m != "bad" {
			d.Fatalf(t, "%v", err)
		}
	}
	f, _ := arg(d, "f")
	if r.Flags, err = parseFlags(f); err != nil {
		d.Fatalf(t, "%v", err)
	}
	if v, ok := arg(d, "t"); ok {
		if r.Timeout, err = time.ParseDuration(v); err != nil {
			d.Fatalf(t, "%v", err)
		}
	}
	if v, ok := arg(d, "lvb"); ok {
		copy(r.LVB[:], v)
	}
	return r
}

func cred(t *testing.T, d *datadriven.TestData) Cred {
	c := Cred{UID: uint32(num(t, d, "uid", 1000)), GID: uint32(num(t, d, "gid", 1000))}
	if g, ok := arg(d, "groups"); ok {
		for _, p := range strings.Split(g, "|") {
			n, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				d.Fatalf(t, "%v", err)
			}
			c.Groups = append(c.Groups, uint32(n))
		}
	}
	return c
}

func render(effs []Effect, err error) string {
	if err != nil {
		return "error: " + err.Error() + "\n"
	}
	if len(effs) == 0 {
		return "ok\n"
	}
	var b strings.Builder
	for _, e := range effs {
		b.WriteString(e.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func lvbText(v LVB) string { return strings.TrimRight(string(v[:]), "\x00") }

func (s *script) dump(ls *Lockspace) string {
	var b strings.Builder
	for _, name := range ls.Resources() {
		v, valid, _ := ls.LVB(name)
		fmt.Fprintf(&b, "%s lvb=%q", name, lvbText(v))
		if !valid {
			b.WriteString(" invalid")
		}
		b.WriteByte('\n')
		for _, li := range ls.Dump(name) {
			fmt.Fprintf(&b, "  %v %v", li.State, li.Key)
			switch li.State {
			case StateGranted:
				fmt.Fprintf(&b, " %v", li.Granted)
			case StateConverting:
				fmt.Fprintf(&b, " %v->%v", li.Granted, li.Requested)
			case StateWaiting:
				fmt.Fprintf(&b, " %v", li.Requested)
			}
			if li.Persistent {
				b.WriteString(" persistent")
			}
			if li.Orphan {
				b.WriteString(" orphan")
			}
			if li.Token != 0 {
				fmt.Fprintf(&b, " token=%d", li.Token)
			}
			if !li.Deadline.IsZero() {
				fmt.Fprintf(&b, " until=+%v", li.Deadline.Sub(t0))
			}
			b.WriteByte('\n')
		}
	}
	if b.Len() == 0 {
		return "empty\n"
	}
	return b.String()
}

func (s *script) run(t *testing.T, d *datadriven.TestData) string {
	switch d.Cmd {
	case "new":
		name, _ := arg(d, "name")
		cfg := Config{UID: uint32(num(t, d, "uid", 1000)), GID: uint32(num(t, d, "gid", 1000)), System: d.HasArg("system")}
		by := Cred{UID: uint32(num(t, d, "by-uid", 0)), GID: uint32(num(t, d, "by-gid", 0))}
		ls, err := New(name, cfg, by)
		if err != nil {
			return render(nil, err)
		}
		if s.spaces[name] == nil {
			s.order = append(s.order, name)
		}
		s.spaces[name], s.cur = ls, name
		return "ok\n"
	case "use":
		s.cur = must(t, d, "name")
		s.ls(t, d)
		return "ok\n"
	case "lock":
		ls := s.ls(t, d)
		return render(ls.Lock(s.now, cred(t, d), s.request(t, d)))
	case "convert":
		ls := s.ls(t, d)
		return render(ls.Convert(s.now, s.request(t, d)))
	case "unlock":
		ls := s.ls(t, d)
		r := s.request(t, d)
		return render(ls.Unlock(r.Owner, r.ID, r.Flags, r.LVB))
	case "cancel":
		ls := s.ls(t, d)
		r := s.request(t, d)
		return render(ls.Cancel(r.Owner, r.ID))
	case "tick":
		ls := s.ls(t, d)
		if v, ok := arg(d, "d"); ok {
			dd, err := time.ParseDuration(v)
			if err != nil {
				d.Fatalf(t, "%v", err)
			}
			s.now = s.now.Add(dd)
		}
		return fmt.Sprintf("now=+%v\n", s.now.Sub(t0)) + render(ls.Tick(s.now), nil)
	case "next-deadline":
		at, ok := s.ls(t, d).NextDeadline()
		if !ok {
			return "none\n"
		}
		return fmt.Sprintf("+%v\n", at.Sub(t0))
	case "exit", "purge":
		ls := s.ls(t, d)
		o, err := parseOwner(must(t, d, "o"))
		if err != nil {
			d.Fatalf(t, "%v", err)
		}
		if d.Cmd == "exit" {
			return render(ls.OwnerExit(o), nil)
		}
		return render(ls.PurgeOrphans(o), nil)
	case "drop":
		return render(s.ls(t, d).DropNode(NodeID(num(t, d, "node", 0))), nil)
	case "deadlock":
		return render(s.ls(t, d).DetectDeadlocks(), nil)
	case "global-deadlock":
		var edges []Edge
		for _, name := range s.order {
			edges = append(edges, s.spaces[name].WaitEdges()...)
		}
		victims := FindVictims(edges)
		var b strings.Builder
		for _, v := range victims {
			fmt.Fprintf(&b, "victim %v %s seq=%d\n", v.Key, v.Resource, v.Seq)
		}
		for _, name := range s.order {
			b.WriteString(render(s.spaces[name].ApplyVictims(victims), nil))
		}
		return b.String()
	case "edges":
		var b strings.Builder
		for _, e := range s.ls(t, d).WaitEdges() {
			fmt.Fprintf(&b, "%v (%v %s %v seq=%d) -> %v\n", e.Waiter.Key.Owner, e.Waiter.Key, e.Waiter.Resource, e.Waiter.Mode, e.Waiter.Seq, e.Holder)
		}
		if b.Len() == 0 {
			return "none\n"
		}
		return b.String()
	case "dump":
		return s.dump(s.ls(t, d))
	case "token":
		return fmt.Sprintf("%d\n", s.ls(t, d).Token(must(t, d, "r")))
	case "raise-token":
		s.ls(t, d).RaiseToken(must(t, d, "r"), num(t, d, "floor", 0))
		return "ok\n"
	case "forget-token":
		return fmt.Sprintf("%d\n", s.ls(t, d).ForgetToken(must(t, d, "r")))
	case "rebuild":
		old := s.ls(t, d)
		dead := NodeID(num(t, d, "dead", 0))
		fresh, err := New(old.Name(), old.Config(), root)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, name := range old.Resources() {
			fresh.RaiseToken(name, num(t, d, "floor", 0))
			var copies []LockInfo
			for _, li := range old.Dump(name) {
				if li.Key.Owner.Node != dead {
					copies = append(copies, li)
				}
			}
			if len(copies) == 0 {
				continue
			}
			b.WriteString(render(fresh.Rebuild(name, copies)))
		}
		s.spaces[s.cur] = fresh
		return b.String()
	}
	d.Fatalf(t, "unknown command %q", d.Cmd)
	return ""
}
