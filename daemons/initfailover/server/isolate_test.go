package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/client/initnode"
	"github.com/openssi/openssi/daemons/initfailover/server"
	"github.com/openssi/openssi/daemons/initfailover/systemdfake"
	"github.com/openssi/openssi/internal/localapi"
	initfailoverv1 "github.com/openssi/openssi/proto/initfailover/v1"
)

// fakeView is a membership of nodes 1..nodes, all UP but those down
// says are not (nil: none).
type fakeView struct {
	self, nodes int
	down        func(n int) bool
}

func (f *fakeView) Nodes(context.Context) (cluster.View, error) {
	v := cluster.View{ThisNode: f.self, Quorum: true}
	for n := 1; n <= f.nodes; n++ {
		st := cluster.Up
		if f.down != nil && f.down(n) {
			st = cluster.Down
		}
		v.Nodes = append(v.Nodes, cluster.Node{Number: n, State: st})
	}
	return v, nil
}

// The units of the isolate tests' systemd: maint.target pulls in
// openssi.target (which wants the daemons) and basic.target, as a
// maintenance run level would; bare.target pulls in basic.target only;
// closed.target has AllowIsolate=no.
const (
	maintTarget  = "maint.target"
	bareTarget   = "bare.target"
	closedTarget = "closed.target"
	appUnit      = "app.service"
)

// isoCluster starts n nodes whose fake systemd knows the isolate units,
// app.service active on each; edit (nil: none) changes node num's fake
// and configuration before it serves.
func isoCluster(t *testing.T, n int, edit func(num uint32, sd *systemdfake.Systemd, cfg *server.Config)) (*testCluster, map[uint32]*systemdfake.Systemd, *systemdfake.Timeline) {
	t.Helper()
	tl := &systemdfake.Timeline{}
	fakes := map[uint32]*systemdfake.Systemd{}
	c := startClusterWith(t, n, func(num uint32, cfg *server.Config) {
		sd := systemdfake.New(num, tl, webUnit, maintTarget, bareTarget, closedTarget, appUnit,
			"openssi.target", "openssi-clmsd.service", "consul.service", "basic.target", "sockets.target", "dbus.socket")
		sd.SetWants(maintTarget, "basic.target", "openssi.target", "missing.service")
		sd.SetWants("openssi.target", "openssi-clmsd.service", "consul.service")
		sd.SetWants("basic.target", "sockets.target")
		sd.SetWants("sockets.target", "dbus.socket", "basic.target") // a loop
		sd.SetWants(bareTarget, "basic.target")
		for _, u := range []string{maintTarget, bareTarget} {
			sd.SetAllowIsolate(u, true)
		}
		for _, u := range []string{appUnit, "openssi.target", "openssi-clmsd.service", "consul.service", "basic.target", "sockets.target", "dbus.socket"} {
			if err := sd.Start(context.Background(), u); err != nil {
				t.Fatal(err)
			}
		}
		fakes[num] = sd
		cfg.Systemd = sd
		cfg.AskInit = func(context.Context) (uint32, error) { return 0, nil }
		if edit != nil {
			edit(num, sd, cfg)
		}
	})
	return c, fakes, tl
}

func noneIsolated(t *testing.T, fakes map[uint32]*systemdfake.Systemd) {
	t.Helper()
	for n, sd := range fakes {
		if got := sd.Isolated(); got != "" || !sd.Active(appUnit) {
			t.Errorf("node %d: isolated %q, %s active %v: want nothing changed", n, got, appUnit, sd.Active(appUnit))
		}
	}
}

// TestIsolateRefused: a target that is not one, does not exist, does not
// allow isolation or would take the node out of the cluster is refused
// with one line naming the nodes, before any node changes.
func TestIsolateRefused(t *testing.T) {
	c, fakes, _ := isoCluster(t, 3, func(num uint32, sd *systemdfake.Systemd, _ *server.Config) {
		if num == 3 {
			sd.SetAllowIsolate(maintTarget, false)
		}
	})
	cl := c.client(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	view := &fakeView{self: 1, nodes: 3}
	lock := &runLock{}
	for _, tc := range []struct {
		target string
		force  bool
		want   string
	}{
		{"app.service", false, "isolate app.service: refused, no node changed: app.service is not a target (systemd isolates only a .target)"},
		{"bad name.target", false, "refused, no node changed: unit name \"bad name.target\" has a character systemd refuses"},
		{"nope.target", false, "refused, no node changed: nodes 1, 2, 3: unit nope.target not found"},
		{closedTarget, true, "refused, no node changed: nodes 1, 2, 3: closed.target has AllowIsolate=no: systemd isolates only targets that allow it"},
		{bareTarget, false, "refused, no node changed: nodes 1, 2, 3: bare.target does not pull in openssi.target: isolating it would take the node out of the cluster (add Wants=openssi.target to it, or --force)"},
		{maintTarget, false, "refused, no node changed: node 3: maint.target has AllowIsolate=no"},
	} {
		err := cl.Isolate(ctx, tc.target, view, lock.on(1), initnode.IsolateOptions{Force: tc.force})
		if !errors.Is(err, initnode.ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("isolate %s (force %v): %v\nwant ErrRefused with %q", tc.target, tc.force, err, tc.want)
		}
	}
	noneIsolated(t, fakes)
	// --force lets bare.target through the checks (a dry run).
	if err := cl.Isolate(ctx, bareTarget, view, nil, initnode.IsolateOptions{Force: true, DryRun: true}); err != nil {
		t.Errorf("isolate %s --force --dry-run: %v", bareTarget, err)
	}
	noneIsolated(t, fakes)
	lock.free(t)
}

// TestIsolateMajority: with one node of three DOWN, no node may move:
// the other UP node alone is not a majority.
func TestIsolateMajority(t *testing.T) {
	c, fakes, _ := isoCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	view := &fakeView{self: 1, nodes: 3, down: func(n int) bool { return n == 2 }}
	lock := &runLock{}
	err := c.client(1).Isolate(ctx, maintTarget, view, lock.on(1), initnode.IsolateOptions{})
	lock.free(t)
	want := "isolate maint.target: refused, no node changed: only 1 of the cluster's 3 nodes would stay UP while node 3 moves, fewer than a majority (2)"
	if !errors.Is(err, initnode.ErrRefused) || err.Error() != want {
		t.Errorf("isolate with node 2 DOWN: %v\nwant %s", err, want)
	}
	noneIsolated(t, fakes)
}

// TestIsolateRolls: every node moves to the target, one at a time, this
// node last, each reported; what the target does not pull in stops.
func TestIsolateRolls(t *testing.T) {
	c, fakes, tl := isoCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var steps []string
	o := initnode.IsolateOptions{Settle: 20 * time.Millisecond, Poll: 5 * time.Millisecond, Progress: func(p initnode.Progress) {
		mu.Lock()
		defer mu.Unlock()
		steps = append(steps, fmt.Sprintf("%d:%d", p.Kind, p.Node))
		t.Log(p)
	}}
	lock := &runLock{}
	if err := c.client(2).Isolate(ctx, maintTarget, &fakeView{self: 2, nodes: 3}, lock.on(2), o); err != nil {
		t.Fatal(err)
	}
	lock.free(t)
	want := fmt.Sprintf("%d:0 %[2]d:1 %[3]d:1 %[4]d:1 %[2]d:3 %[3]d:3 %[4]d:3 %[2]d:2 %[3]d:2 %[4]d:2 %[5]d:0",
		initnode.Planned, initnode.Isolating, initnode.Isolated, initnode.Back, initnode.Finished)
	if got := strings.Join(steps, " "); got != want {
		t.Errorf("steps %s\nwant  %s", got, want)
	}
	for n, sd := range fakes {
		if sd.Isolated() != maintTarget || sd.Active(appUnit) || !sd.Active("openssi-clmsd.service") || !sd.Active(maintTarget) {
			t.Errorf("node %d: isolated %q, app %v, clmsd %v", n, sd.Isolated(), sd.Active(appUnit), sd.Active("openssi-clmsd.service"))
		}
	}
	// One node at a time: each node's isolate events come after all of
	// the node before it.
	var nodes []uint32
	for _, e := range tl.Events() {
		if e.Op == "isolate" && (len(nodes) == 0 || nodes[len(nodes)-1] != e.Node) {
			nodes = append(nodes, e.Node)
		}
	}
	if fmt.Sprint(nodes) != "[1 3 2]" {
		t.Errorf("isolate events by node %v, want [1 3 2]", nodes)
	}
}

// TestIsolateStopsAtANodeThatLeaves: a node not UP again after its
// isolate stops the change there, naming it; the nodes after it stay.
func TestIsolateStopsAtANodeThatLeaves(t *testing.T) {
	c, fakes, _ := isoCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	view := &fakeView{self: 1, nodes: 3, down: func(n int) bool { return n == 2 && fakes[2].Isolated() != "" }}
	lock := &runLock{}
	err := c.client(1).Isolate(ctx, maintTarget, view, lock.on(1), initnode.IsolateOptions{Settle: 20 * time.Millisecond, Timeout: 300 * time.Millisecond, Poll: 5 * time.Millisecond})
	lock.free(t)
	want := "isolate maint.target: stopped at node 2 (no node moved): node 2 is not UP in the membership 300ms after its isolate"
	if !errors.Is(err, initnode.ErrStopped) || !strings.HasPrefix(fmt.Sprint(err), want) {
		t.Errorf("got %v\nwant %s...", err, want)
	}
	if fakes[3].Isolated() != "" || fakes[1].Isolated() != "" {
		t.Error("nodes after the one that left moved")
	}
}

// TestIsolateOneNodeAtATime: initfailover itself refuses to isolate
// several nodes in one call (only checks may name several).
func TestIsolateOneNodeAtATime(t *testing.T) {
	c, fakes, _ := isoCluster(t, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, _, err := localapi.DialSocket(ctx, c.nodes[1].socket, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := initfailoverv1.NewInitfailoverClient(conn)
	for _, req := range []*initfailoverv1.ServiceRequest{
		{Action: initfailoverv1.Action_ACTION_ISOLATE, Unit: maintTarget, All: true},
		{Action: initfailoverv1.Action_ACTION_ISOLATE, Unit: maintTarget, Nodes: []uint32{1, 2}},
	} {
		_, err := api.Service(ctx, req)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "one node at a time") {
			t.Errorf("%v: %v, want InvalidArgument", req, err)
		}
	}
	r, err := api.Service(ctx, &initfailoverv1.ServiceRequest{Action: initfailoverv1.Action_ACTION_ISOLATE, Unit: maintTarget, All: true, Check: true})
	if err != nil || len(r.GetLines()) != 2 || r.GetLines()[0].GetError() != "" {
		t.Errorf("a check of every node: %v %v", r, err)
	}
	noneIsolated(t, fakes)
}

// runLock is an in-memory initnode.RunLock shared by the nodes of a
// test: one holder at a time, as dlmd's EX lock of DLMRunLock.
type runLock struct {
	mu     sync.Mutex
	holder int
	taken  int
}

// on is the lock as node's runs take it.
func (l *runLock) on(node int) initnode.RunLock { return nodeLock{l, node} }

// free checks that no run holds the lock.
func (l *runLock) free(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.holder != 0 {
		t.Errorf("the run lock is still held by node %d", l.holder)
	}
}

type nodeLock struct {
	l    *runLock
	node int
}

func (n nodeLock) TryLock(context.Context) (initnode.Held, error) {
	n.l.mu.Lock()
	defer n.l.mu.Unlock()
	if n.l.holder != 0 {
		return nil, &initnode.BusyError{Node: n.l.holder}
	}
	n.l.holder = n.node
	n.l.taken++
	return n, nil
}

func (n nodeLock) Err() error { return nil }

func (n nodeLock) Release() {
	n.l.mu.Lock()
	defer n.l.mu.Unlock()
	if n.l.holder == n.node {
		n.l.holder = 0
	}
}

// TestIsolateOneRunAtATime: two runs started at once from two nodes do
// not both move nodes (each would isolate a node at the same moment and
// could take a majority out): one is refused naming the other's node;
// the lock is free at the end, and after a run cut short (Ctrl-C).
func TestIsolateOneRunAtATime(t *testing.T) {
	c, fakes, _ := isoCluster(t, 3, func(_ uint32, sd *systemdfake.Systemd, _ *server.Config) {
		sd.IsolateTakes(100 * time.Millisecond)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lock := &runLock{}
	o := initnode.IsolateOptions{Settle: 20 * time.Millisecond, Poll: 5 * time.Millisecond}
	errs := make([]error, 3)
	var started sync.WaitGroup
	started.Add(2)
	var wg sync.WaitGroup
	for _, n := range []int{1, 2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			started.Wait()
			errs[n] = c.client(uint32(n)).Isolate(ctx, maintTarget, &fakeView{self: n, nodes: 3}, lock.on(n), o)
		}()
	}
	wg.Wait()
	var ran, refused []int
	for _, n := range []int{1, 2} {
		switch err := errs[n]; {
		case err == nil:
			ran = append(ran, n)
		case errors.Is(err, initnode.ErrRefused):
			refused = append(refused, n)
			t.Logf("node %d: %v", n, err)
		default:
			t.Errorf("node %d: %v", n, err)
		}
	}
	if len(ran) != 1 || len(refused) != 1 {
		t.Fatalf("runs that went on: %v, refused: %v; want one of each", ran, refused)
	}
	want := fmt.Sprintf("isolate maint.target: refused, no node changed: another ssi isolate is running (from node %d); wait for it or stop it", ran[0])
	if got := errs[refused[0]].Error(); got != want {
		t.Errorf("refusal %q\nwant %q", got, want)
	}
	lock.free(t)
	for n, sd := range fakes {
		if sd.Isolated() != maintTarget {
			t.Errorf("node %d not isolated", n)
		}
	}

	// Ctrl-C during a node's job: the run ends and frees the lock.
	fakes[1].IsolateTakes(-1)
	cctx, ccancel := context.WithCancel(ctx)
	o.Progress = func(p initnode.Progress) {
		if p.Kind == initnode.Isolating {
			ccancel()
		}
	}
	err := c.client(2).Isolate(cctx, bareTarget, &fakeView{self: 2, nodes: 3}, lock.on(2), initnode.IsolateOptions{Force: true, Settle: o.Settle, Poll: o.Poll, Progress: o.Progress})
	if !errors.Is(err, initnode.ErrStopped) {
		t.Errorf("a run cancelled: %v, want it stopped", err)
	}
	lock.free(t)
}

// TestIsolateTimeout: --timeout is each node's job's bound, not the
// server's shorter default (initfailover cut the job at its own 2
// minutes); a job that outlasts it stops the run with one line that
// says what to do; a timeout above an hour is refused.
func TestIsolateTimeout(t *testing.T) {
	c, fakes, _ := isoCluster(t, 3, func(_ uint32, sd *systemdfake.Systemd, cfg *server.Config) {
		sd.IsolateTakes(300 * time.Millisecond)
		cfg.Timeout = 100 * time.Millisecond // initfailover's own bound
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lock := &runLock{}
	o := initnode.IsolateOptions{Settle: 20 * time.Millisecond, Poll: 5 * time.Millisecond, Timeout: 5 * time.Second}
	if err := c.client(1).Isolate(ctx, maintTarget, &fakeView{self: 1, nodes: 3}, lock.on(1), o); err != nil {
		t.Fatalf("isolate, jobs of 300ms, --timeout 5s: %v", err)
	}
	fakes[2].IsolateTakes(-1)
	o.Timeout = 400 * time.Millisecond
	err := c.client(1).Isolate(ctx, bareTarget, &fakeView{self: 1, nodes: 3}, lock.on(1), initnode.IsolateOptions{Force: true, Settle: o.Settle, Poll: o.Poll, Timeout: o.Timeout})
	want := "isolate bare.target: stopped at node 2 (no node moved): node 2 did not reach bare.target within 400ms; check `systemctl list-jobs` there, or raise --timeout"
	if !errors.Is(err, initnode.ErrStopped) || err.Error() != want {
		t.Errorf("a job that outlasts --timeout: %v\nwant %s", err, want)
	}
	lock.free(t)
	err = c.client(1).Isolate(ctx, maintTarget, &fakeView{self: 1, nodes: 3}, lock.on(1), initnode.IsolateOptions{Timeout: 2 * time.Hour})
	if want := "isolate maint.target: refused, no node changed: timeout 2h0m0s: want at most 1h0m0s"; !errors.Is(err, initnode.ErrRefused) || err.Error() != want {
		t.Errorf("--timeout 2h: %v\nwant %s", err, want)
	}
}

// TestIsolateForcedNodeLeaves: with --force, a node seen DOWN after its
// job stops the run at once, saying it will not come back, rather than
// after --timeout.
func TestIsolateForcedNodeLeaves(t *testing.T) {
	c, fakes, _ := isoCluster(t, 3, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	view := &fakeView{self: 1, nodes: 3, down: func(n int) bool { return n == 2 && fakes[2].Isolated() != "" }}
	lock := &runLock{}
	t0 := time.Now()
	err := c.client(1).Isolate(ctx, bareTarget, view, lock.on(1), initnode.IsolateOptions{Force: true, Settle: 20 * time.Millisecond, Timeout: 10 * time.Second, Poll: 5 * time.Millisecond})
	took := time.Since(t0)
	want := "isolate bare.target: stopped at node 2 (no node moved): node 2 is DOWN in the membership after its isolate: the forced target took it out of the cluster, and it will not come back by itself"
	if !errors.Is(err, initnode.ErrStopped) || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
	if took > 5*time.Second {
		t.Errorf("stopped after %s: want at once, not after --timeout (10s)", took)
	}
	lock.free(t)
}
