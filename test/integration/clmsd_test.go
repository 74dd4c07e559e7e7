package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/cmd/ssi/cli"
	"github.com/openssi/openssi/daemons/clmsd/membership"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/nodetest"
)

func start(t *testing.T, servers, clients int) *nodetest.Cluster {
	t.Helper()
	return nodetest.Start(t, nodetest.Options{
		Consul: consulagent.Options{Servers: servers, Clients: clients},
		Clmsd:  clmsdBin,
	})
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func view(t *testing.T, ctx context.Context, n *nodetest.Node) cluster.View {
	t.Helper()
	c, err := n.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func numberOf(t *testing.T, ctx context.Context, n *nodetest.Node) int {
	t.Helper()
	if err := n.WaitFor(ctx, "clmsd answering", func(cluster.View) bool { return true }); err != nil {
		t.Fatal(err)
	}
	c, err := n.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	me, err := c.ThisNode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return me.Number
}

// recorder collects the events one subscriber sees.
type recorder struct {
	mu     sync.Mutex
	events []cluster.Event
	err    error
	done   chan struct{}
}

func watch(t *testing.T, ctx context.Context, n *nodetest.Node, from uint64) *recorder {
	t.Helper()
	c, err := n.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{done: make(chan struct{})}
	w := c.Watch(ctx, from)
	go func() {
		defer close(r.done)
		defer c.Close()
		for w.Next() {
			r.mu.Lock()
			r.events = append(r.events, w.Event())
			r.mu.Unlock()
		}
		r.mu.Lock()
		r.err = w.Err()
		r.mu.Unlock()
	}()
	return r
}

func (r *recorder) snapshot() []cluster.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]cluster.Event(nil), r.events...)
}

// waitEvent waits until the recorder saw an event of type typ for node n
// and returns it with the time it took.
func (r *recorder) waitEvent(ctx context.Context, typ cluster.EventType, n int) (cluster.Event, error) {
	for {
		for _, e := range r.snapshot() {
			if e.Type == typ && e.Node.Number == n {
				return e, nil
			}
		}
		select {
		case <-ctx.Done():
			return cluster.Event{}, fmt.Errorf("no %s for node %d; saw %s", typ, n, summary(r.snapshot()))
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func summary(es []cluster.Event) string {
	var parts []string
	for _, e := range es {
		parts = append(parts, fmt.Sprintf("%s %d@%d", e.Type, e.Node.Number, e.Epoch))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// checkOrder fails when epochs are not consecutive (each event exactly once,
// in order).
func checkOrder(t *testing.T, who string, es []cluster.Event, from uint64) {
	t.Helper()
	for i, e := range es {
		if e.Epoch != from+uint64(i)+1 {
			t.Fatalf("%s: events not consecutive after epoch %d: %s", who, from, summary(es))
		}
	}
}

func TestNodeNumbersAreClaimedOnceAndKept(t *testing.T) {
	c := start(t, 3, 1)
	ctx := ctxFor(t, 2*time.Minute)
	seen := map[int]string{}
	for _, n := range c.Nodes {
		num := numberOf(t, ctx, n)
		if other, dup := seen[num]; dup {
			t.Fatalf("node number %d given to %s and %s", num, other, n.Agent.Name)
		}
		seen[num] = n.Agent.Name
		b, err := os.ReadFile(filepath.Join(n.StateDir, "node"))
		if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(num) {
			t.Fatalf("%s: state file %q %v, want %d", n.Agent.Name, b, err, num)
		}
		if num < 1 || num > 4 {
			t.Fatalf("%s got number %d, want 1..4", n.Agent.Name, num)
		}
	}

	// A restarted clmsd keeps its number.
	n4 := c.Nodes[3]
	before := numberOf(t, ctx, n4)
	if err := n4.KillClmsd(); err != nil {
		t.Fatal(err)
	}
	if err := n4.StartClmsd(); err != nil {
		t.Fatal(err)
	}
	if err := n4.WaitFor(ctx, "own node UP", func(v cluster.View) bool { return len(v.Nodes) == 4 }); err != nil {
		t.Fatal(err)
	}
	if after := numberOf(t, ctx, n4); after != before {
		t.Fatalf("number changed across restart: %d -> %d", before, after)
	}

	// Asking for the number of another live node is refused, with exit 2
	// and one clear line.
	if err := n4.StopClmsd(); err != nil {
		t.Fatal(err)
	}
	taken := numberOf(t, ctx, c.Nodes[0])
	cmd := exec.CommandContext(ctx, clmsdBin, "--config", n4.ConfigFile, "--node-number", fmt.Sprint(taken))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("clmsd with a live node's number: %v, want exit 2; stderr:\n%s", err, stderr.String())
	}
	line := strings.TrimSpace(stderr.String()[strings.LastIndex(strings.TrimRight(stderr.String(), "\n"), "\n")+1:])
	want := fmt.Sprintf("node number %d (from clmsd.node_number) is held by live node %q", taken, c.Nodes[0].Agent.Name)
	if !strings.Contains(line, want) {
		t.Fatalf("last stderr line %q does not contain %q", line, want)
	}
}

func TestNodeDeathIsSeenBySurvivorsAndRestartKeepsNumber(t *testing.T) {
	c := start(t, 3, 0)
	ctx := ctxFor(t, 2*time.Minute)
	victim := c.Nodes[2]
	num := numberOf(t, ctx, victim)
	v := view(t, ctx, c.Nodes[0])
	r0 := watch(t, ctx, c.Nodes[0], v.Epoch)
	r1 := watch(t, ctx, c.Nodes[1], v.Epoch)

	killed := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	for i, r := range []*recorder{r0, r1} {
		e, err := r.waitEvent(ctxFor(t, 20*time.Second), cluster.NodeDown, num)
		if err != nil {
			t.Fatalf("survivor %d: %v", i+1, err)
		}
		t.Logf("survivor %d: NODEDOWN for node %d after %v (epoch %d)", i+1, num, time.Since(killed).Round(time.Millisecond), e.Epoch)
	}

	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	for i, r := range []*recorder{r0, r1} {
		e, err := r.waitEvent(ctxFor(t, 30*time.Second), cluster.NodeUp, num)
		if err != nil {
			t.Fatalf("survivor %d: %v", i+1, err)
		}
		if e.Node.Name != victim.Agent.Name {
			t.Fatalf("NODEUP for %d names %q", num, e.Node.Name)
		}
	}
	// The survivors may see it UP before its own clmsd has read the view.
	if err := victim.WaitFor(ctx, "its own view to have it UP", func(v cluster.View) bool {
		for _, m := range v.Nodes {
			if m.Name == victim.Agent.Name && m.State == cluster.Up {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if got := numberOf(t, ctx, victim); got != num {
		t.Fatalf("node came back as %d, want %d", got, num)
	}
	// Both survivors saw the same events, each once, in epoch order, and
	// nothing was reported as a leave.
	s0, s1 := r0.snapshot(), r1.snapshot()
	checkOrder(t, "survivor 1", s0, v.Epoch)
	checkOrder(t, "survivor 2", s1, v.Epoch)
	if summary(s0) != summary(s1) {
		t.Fatalf("survivors disagree: %s vs %s", summary(s0), summary(s1))
	}
	for _, e := range s0 {
		if e.Type == cluster.NodeLeave {
			t.Fatalf("a failure was reported as a leave: %s", summary(s0))
		}
	}
}

func TestLeaveIsNotReportedAsFailure(t *testing.T) {
	c := start(t, 3, 1)
	ctx := ctxFor(t, 2*time.Minute)
	v := view(t, ctx, c.Nodes[0])
	r := watch(t, ctx, c.Nodes[0], v.Epoch)

	// A unit stop (SIGTERM) is a leave.
	stopped := c.Nodes[3]
	n3 := numberOf(t, ctx, stopped)
	if err := stopped.StopClmsd(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.waitEvent(ctxFor(t, 15*time.Second), cluster.NodeLeave, n3); err != nil {
		t.Fatal(err)
	}

	// `ssi node leave` on another node: clmsd records the leave and exits 0.
	leaver := c.Nodes[2]
	n2 := numberOf(t, ctx, leaver)
	var out, errOut bytes.Buffer
	if code := cli.Main([]string{"--run-dir", leaver.RunDir, "node", "leave"}, &out, &errOut); code != 0 {
		t.Fatalf("ssi node leave: exit %d: %s", code, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "left the cluster at epoch ") {
		t.Fatalf("ssi node leave printed %q", out.String())
	}
	if err := leaver.WaitClmsdExit(ctxFor(t, 15*time.Second)); err != nil {
		t.Fatalf("clmsd after leave: %v", err)
	}
	if _, err := r.waitEvent(ctxFor(t, 15*time.Second), cluster.NodeLeave, n2); err != nil {
		t.Fatal(err)
	}
	// Give a wrongly emitted NODEDOWN the time to show up, then check none did.
	if err := c.Nodes[0].WaitFor(ctx, "two nodes LEAVING", func(v cluster.View) bool {
		l := 0
		for _, m := range v.Nodes {
			if m.State == cluster.Leaving {
				l++
			}
		}
		return l == 2
	}); err != nil {
		t.Fatal(err)
	}
	for _, e := range r.snapshot() {
		if e.Type == cluster.NodeDown {
			t.Fatalf("a leave was reported as a failure: %s", summary(r.snapshot()))
		}
	}
	// The stopped node rejoins with its number.
	if err := stopped.StartClmsd(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.waitEvent(ctxFor(t, 15*time.Second), cluster.NodeUp, n3); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, "subscriber", r.snapshot(), v.Epoch)
}

func TestSubscriberResumesWithExactlyTheMissedEvents(t *testing.T) {
	c := start(t, 3, 0)
	ctx := ctxFor(t, 2*time.Minute)
	observer, victim := c.Nodes[0], c.Nodes[2]
	num := numberOf(t, ctx, victim)
	last := view(t, ctx, observer).Epoch // the subscriber disconnects here

	// While it is away: a failure and a return.
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := observer.WaitFor(ctx, "victim DOWN", func(v cluster.View) bool { return state(v, num) == cluster.Down }); err != nil {
		t.Fatal(err)
	}
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	if err := observer.WaitFor(ctx, "victim UP", func(v cluster.View) bool { return state(v, num) == cluster.Up }); err != nil {
		t.Fatal(err)
	}

	r := watch(t, ctx, observer, last)
	deadline := ctxFor(t, 10*time.Second)
	for len(r.snapshot()) < 2 && deadline.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	got := summary(r.snapshot())
	want := fmt.Sprintf("[NODEDOWN %d@%d, NODEUP %d@%d]", num, last+1, num, last+2)
	if got != want {
		t.Fatalf("replay after epoch %d: %s, want %s", last, got, want)
	}

	// A subscriber whose clmsd restarts under it continues without a gap or
	// a repeat.
	if err := observer.KillClmsd(); err != nil {
		t.Fatal(err)
	}
	if err := observer.StartClmsd(); err != nil {
		t.Fatal(err)
	}
	other := c.Nodes[1]
	onum := numberOf(t, ctx, other)
	if err := other.StopClmsd(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.waitEvent(ctxFor(t, 30*time.Second), cluster.NodeLeave, onum); err != nil {
		t.Fatal(err)
	}
	checkOrder(t, "resumed subscriber", r.snapshot(), last)
}

func state(v cluster.View, n int) cluster.State {
	for _, m := range v.Nodes {
		if m.Number == n {
			return m.State
		}
	}
	return ""
}

func TestSsiNodesShowsTheClusterWithSkew(t *testing.T) {
	// Every daemon of daemons.All runs, so `ssi status` is all SERVING.
	c := nodetest.Start(t, nodetest.Options{
		Consul:   consulagent.Options{Servers: 3},
		Clmsd:    clmsdBin,
		Dlmd:     dlmdBin,
		Binaries: map[string]string{"vprocd": vprocdBin, "initfailover": initfailoverBin, "keepalived": keepalivedBin, "lvsd": lvsdBin, "cfsd": cfsdBin},
	})
	ctx := ctxFor(t, time.Minute)
	n := c.Nodes[0]
	// Clock offsets are measured every 500ms (skew_interval in the test config).
	if err := n.WaitFor(ctx, "skew measured for every node", func(v cluster.View) bool {
		for _, m := range v.Nodes {
			if !m.SkewKnown {
				return false
			}
		}
		return len(v.Nodes) == 3
	}); err != nil {
		t.Fatal(err)
	}
	v := view(t, ctx, n)
	for _, m := range v.Nodes {
		// One machine, one clock: the estimate must be tiny.
		if m.Skew > 50*time.Millisecond || m.Skew < -50*time.Millisecond || m.SkewWarning {
			t.Fatalf("node %d: skew %v warning %v on a single clock", m.Number, m.Skew, m.SkewWarning)
		}
	}
	var out, errOut bytes.Buffer
	if code := cli.Main([]string{"--run-dir", n.RunDir, "nodes"}, &out, &errOut); code != 0 {
		t.Fatalf("ssi nodes: exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "NODE  NAME") || strings.Count(out.String(), " UP ") != 3 {
		t.Fatalf("ssi nodes:\n%s", out.String())
	}
	out.Reset()
	if code := cli.Main([]string{"--run-dir", n.RunDir, "status"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "SERVING") {
		t.Fatalf("ssi status: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
}

func TestBadConfigExitsTwoWithOneLine(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, yaml string
		args       []string
		want       string
	}{
		{"not a number", "clmsd:\n  node_number: abc\n", nil, `clmsd.node_number: "abc" is not valid`},
		{"out of range", "clmsd:\n  node_number: 5000\n", nil, "clmsd.node_number"},
		{"unknown key", "clmsd:\n  node_numbr: 3\n", nil, "node_numbr"},
		{"bad duration", "clmsd:\n  skew_threshold: soon\n", nil, "clmsd.skew_threshold"},
		{"bad flag value", "", []string{"--rpc-port", "99999"}, "clmsd.rpc_port"},
		{"unknown flag", "", []string{"--bogus"}, "unknown flag: --bogus"},
		{"missing explicit file", "", []string{"--config", filepath.Join(dir, "nope.yaml")}, "nope.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o644); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"--config", path}, tt.args...)
			cmd := exec.Command(clmsdBin, args...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("exit %v, want 2; stderr %q", err, stderr.String())
			}
			msg := stderr.String()
			if strings.Count(msg, "\n") != 1 || !strings.Contains(msg, tt.want) {
				t.Fatalf("stderr %q: want one line containing %q", msg, tt.want)
			}
		})
	}
}

// TestLostKeyDuringAnOutageIsHeldForItsGrace: while a node is DOWN, a
// healthy node whose membership session Consul ends for a moment (after a
// partition heals, the cut-off node's late "dead" verdict does that) and
// which takes its key again at once is not reported DOWN; a node that
// really dies during the outage is, once its grace has passed.
func TestLostKeyDuringAnOutageIsHeldForItsGrace(t *testing.T) {
	c := start(t, 3, 2)
	ctx := ctxFor(t, 3*time.Minute)
	down, flapper, dies := c.Nodes[4], c.Nodes[3], c.Nodes[2]
	nDown, nFlapper, nDies := numberOf(t, ctx, down), numberOf(t, ctx, flapper), numberOf(t, ctx, dies)
	v := view(t, ctx, c.Nodes[0])
	r := watch(t, ctx, c.Nodes[0], v.Epoch)
	if err := down.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.waitEvent(ctxFor(t, 20*time.Second), cluster.NodeDown, nDown); err != nil {
		t.Fatal(err)
	}

	// End the flapper's membership session as Consul does when its leader
	// fails the node: the alive key is released.
	kv := c.Consul.Client()
	key := fmt.Sprintf("openssi/clms/alive/%d", nFlapper)
	p, _, err := kv.KV().Get(key, nil)
	if err != nil || p == nil || p.Session == "" {
		t.Fatalf("alive key %s: %v %+v", key, err, p)
	}
	if _, err := kv.Session().Destroy(p.Session, nil); err != nil {
		t.Fatal(err)
	}
	// It takes the key again with a new session.
	deadline := time.Now().Add(20 * time.Second)
	for {
		q, _, err := kv.KV().Get(key, nil)
		if err == nil && q != nil && q.Session != "" && q.Session != p.Session {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d did not take its alive key again: %+v %v", nFlapper, q, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(membership.DownGrace + time.Second) // past any grace
	for _, e := range r.snapshot() {
		if e.Node.Number == nFlapper {
			t.Fatalf("node %d, healthy, lost its membership for a moment during an outage: %s", nFlapper, summary(r.snapshot()))
		}
	}

	// A node that really dies during the outage is DOWN after its grace.
	killed := time.Now()
	if err := dies.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.waitEvent(ctxFor(t, 20*time.Second), cluster.NodeDown, nDies); err != nil {
		t.Fatal(err)
	}
	t.Logf("a second death during the outage: NODEDOWN after %s", time.Since(killed).Round(time.Millisecond))
}
