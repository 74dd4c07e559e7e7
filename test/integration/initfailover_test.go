package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/cmd/ssi/cli"
	"github.com/openssi/openssi/daemons/initfailover/election"
	"github.com/openssi/openssi/daemons/initfailover/server"
	"github.com/openssi/openssi/daemons/initfailover/systemdfake"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/nodetest"
	"github.com/openssi/openssi/internal/rpc"
	"github.com/openssi/openssi/internal/rpc/rpctest"
)

// initNode is one node's initfailover election, run in this process
// against the node's real dlmd, with a recording fake of systemd (systemd
// is not PID 1 on the test host; the lab e2e drives the real one).
type initNode struct {
	num    uint32
	sd     *systemdfake.Systemd
	el     *server.Elector
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

const (
	initTarget  = "openssi-init.target"
	initWeb     = "web.service"
	initCron    = "cron.service"
	initStopFor = 2 * time.Second
)

func startElector(t *testing.T, n *nodetest.Node, num uint32, all []uint32, tl *systemdfake.Timeline) *initNode {
	t.Helper()
	sd := systemdfake.New(num, tl, initTarget, initWeb, initCron)
	log := logrus.New()
	log.SetLevel(logrus.InfoLevel)
	log.SetOutput(testWriter{t})
	sd.SetWants(initTarget, initWeb)
	el := server.NewElector(server.ElectorConfig{
		Self: num, Target: initTarget, Services: []string{initCron}, StopTimeout: initStopFor, Systemd: sd,
		Session: func(ctx context.Context) (*dlm.Client, error) { return dlm.New(ctx, dlm.WithSocket(n.DlmdSocket())) },
		Retry:   200 * time.Millisecond, Poll: 20 * time.Millisecond, Log: log.WithField("node", num),
	})
	ctx, cancel := context.WithCancel(context.Background())
	in := &initNode{num: num, sd: sd, el: el, cancel: cancel, done: make(chan error, 1)}
	for _, m := range all {
		el.SetUp(m, true)
	}
	go func() { in.done <- el.Run(ctx, nil) }()
	t.Cleanup(func() { in.stop(t) })
	return in
}

// stop ends the elector as a SIGTERM ends initfailover.
func (in *initNode) stop(t *testing.T) {
	in.once.Do(func() {
		in.cancel()
		select {
		case err := <-in.done:
			if err != nil {
				t.Errorf("node %d: elector: %v", in.num, err)
			}
		case <-time.After(initStopFor + 10*time.Second):
			t.Errorf("node %d: elector did not stop", in.num)
		}
	})
}

// waitInit waits until exactly one of nodes runs the init services, and
// returns it.
func waitInit(t *testing.T, ctx context.Context, nodes []*initNode, not *initNode) *initNode {
	t.Helper()
	for {
		var on []*initNode
		for _, in := range nodes {
			if in.sd.Active(initTarget) && in.sd.Active(initCron) {
				on = append(on, in)
			}
		}
		if len(on) == 1 && on[0] != not {
			if st, _, is := on[0].el.Status(); !is || st != election.Running {
				t.Fatalf("node %d runs the services in state %v (init %v)", on[0].num, st, is)
			}
			return on[0]
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no single init node: %d run the services", len(on))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// testWriter sends a logger's lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// handover returns when node from last stopped unit, and when node to
// first started it after.
func handover(t *testing.T, tl *systemdfake.Timeline, unit string, from, to uint32) (stopped, started time.Time) {
	t.Helper()
	for _, e := range tl.Events() {
		switch {
		case e.Unit == unit && e.Node == from && !e.Active:
			stopped = e.Time
		case e.Unit == unit && e.Node == to && e.Active && !stopped.IsZero() && e.Time.After(stopped):
			if started.IsZero() {
				started = e.Time
			}
		}
	}
	if stopped.IsZero() || started.IsZero() {
		t.Fatalf("no hand-over of %s from node %d to %d in:\n%v", unit, from, to, tl.Events())
	}
	return stopped, started
}

// TestInitFailover: three nodes with real Consul, clmsd and dlmd, each
// with an initfailover election in this process. One node becomes init;
// a move hands the role to another at once (its services stopped first);
// a SIGTERM of the init's initfailover hands it over at once; a power
// loss of the init node's agent and daemons, whose services refuse to
// stop, makes a survivor take over only after the old copy was killed.
// No two nodes ever run a singleton at once.
func TestInitFailover(t *testing.T) {
	c := startDlm(t, 3, 0)
	ctx := ctxFor(t, 150*time.Second)
	var nums []uint32
	for _, n := range c.Nodes {
		nums = append(nums, uint32(numberOf(t, ctx, n)))
	}
	tl := &systemdfake.Timeline{}
	var nodes []*initNode
	byNum := map[uint32]*nodetest.Node{}
	for i, n := range c.Nodes {
		nodes = append(nodes, startElector(t, n, nums[i], nums, tl))
		byNum[nums[i]] = n
	}
	defer func() {
		for _, u := range []string{initTarget, initCron} {
			if o := tl.Overlaps(u); len(o) > 0 {
				t.Errorf("%s ran on two nodes at once:\n%v\nevents:\n%v", u, o, tl.Events())
			}
		}
	}()

	first := waitInit(t, ctx, nodes, nil)
	t.Logf("init: node %d", first.num)

	// A move to another node: clean, so no stop-timeout wait.
	var target *initNode
	for _, in := range nodes {
		if in != first {
			target = in
			break
		}
	}
	if err := first.el.Move(ctx, target.num); err != nil {
		t.Fatal(err)
	}
	if got := waitInit(t, ctx, nodes, first); got != target {
		t.Fatalf("moved to node %d, node %d took it", target.num, got.num)
	}
	stopped, started := handover(t, tl, initCron, first.num, target.num)
	if d := started.Sub(stopped); d < 0 || d >= initStopFor {
		t.Errorf("move: node %d started %v after node %d stopped; want at once (< %v)", target.num, d, first.num, initStopFor)
	}
	if err := target.el.Move(ctx, 999); err == nil {
		t.Error("a move to an unknown node was accepted")
	}
	if err := first.el.Move(ctx, first.num); err == nil {
		t.Error("a node that is not init accepted a move")
	}

	// A SIGTERM of the init's initfailover: a clean release.
	second := target
	second.stop(t)
	rest := []*initNode{}
	for _, in := range nodes {
		if in != second {
			rest = append(rest, in)
		}
	}
	third := waitInit(t, ctx, rest, nil)
	stopped, started = handover(t, tl, initCron, second.num, third.num)
	if d := started.Sub(stopped); d < 0 || d >= initStopFor {
		t.Errorf("shutdown: node %d started %v after node %d stopped; want at once", third.num, d, second.num)
	}

	// A power loss of the init node, whose cron.service hangs on stop:
	// its elector (still running here, as a cut-off node's would) kills
	// it, and the survivor starts it only after.
	third.sd.Hang(initCron, true)
	var survivor *initNode
	for _, in := range rest {
		if in != third {
			survivor = in
		}
	}
	killAt := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = byNum[third.num].Kill() }()
	if got := waitInit(t, ctx, []*initNode{survivor, third}, third); got != survivor {
		t.Fatalf("node %d took over, want %d", got.num, survivor.num)
	}
	wg.Wait()
	stopped, started = handover(t, tl, initCron, third.num, survivor.num)
	var killed bool
	for _, e := range tl.Events() {
		killed = killed || (e.Node == third.num && e.Unit == initCron && e.Op == "kill")
	}
	if !killed {
		t.Errorf("node %d's hung service was not killed: %v", third.num, tl.Events())
	}
	t.Logf("power loss at %s: old copy killed %v later, new copy started %v after that",
		killAt.Format("15:04:05.000"), stopped.Sub(killAt), started.Sub(stopped))
	if !started.After(stopped) {
		t.Errorf("node %d started before node %d's copy was gone", survivor.num, third.num)
	}
}

// TestInitfailoverWithoutSystemd runs the initfailover binary on nodes
// whose init is not systemd (this host): it serves, never becomes init,
// and ssi init and ssi service say so in one line each.
func TestInitfailoverWithoutSystemd(t *testing.T) {
	c := nodetest.Start(t, nodetest.Options{
		Consul:   consulagent.Options{Servers: 2},
		Clmsd:    clmsdBin,
		Dlmd:     dlmdBin,
		Binaries: map[string]string{"initfailover": initfailoverBin},
	})
	n := c.Nodes[0]
	var out, errOut bytes.Buffer
	if code := cli.Main([]string{"--run-dir", n.RunDir, "init"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), "init node: none now") ||
		!strings.Contains(out.String(), "no systemd") {
		t.Errorf("ssi init: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	code := cli.Main([]string{"--run-dir", n.RunDir, "service", "status", "web.service", "--all"}, &out, &errOut)
	if code != 1 || strings.Count(out.String(), "no systemd on this node") != 2 || !strings.Contains(errOut.String(), "failed on 2 of 2 node(s)") {
		t.Errorf("ssi service status --all: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := cli.Main([]string{"--run-dir", n.RunDir, "init", "move", "2"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "no node is init now") {
		t.Errorf("ssi init move 2: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	// A bare name is a service (as with systemctl); a name systemd would
	// refuse is refused before any node is asked.
	if code := cli.Main([]string{"--run-dir", n.RunDir, "service", "status", "we/b"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "a character systemd refuses") {
		t.Errorf("ssi service status we/b: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
}

// TestInitMoveThroughTheAPI: each node runs the election and the
// initfailover server in this process (peers over mutual TLS with
// per-node certificates, the local API on the node's run directory).
// `ssi init` on any node names the init node, `ssi nodes` marks it, and
// `ssi init move` from a node that is not init is carried to the init
// node, which hands the role over.
func TestInitMoveThroughTheAPI(t *testing.T) {
	c := startDlm(t, 3, 0)
	ctx := ctxFor(t, 90*time.Second)
	var nums []uint32
	for _, n := range c.Nodes {
		nums = append(nums, uint32(numberOf(t, ctx, n)))
	}
	ca := rpctest.NewCA(t, "initfailover integration CA")
	dir := t.TempDir()
	tl := &systemdfake.Timeline{}
	var mu sync.Mutex
	addrs := map[uint32]string{}
	var nodes []*initNode
	for i, n := range c.Nodes {
		num := nums[i]
		in := startElector(t, n, num, nums, tl)
		nodes = append(nodes, in)
		certPEM, keyPEM := ca.IssueNode(t, rpctest.NodeName(num), server.ServiceName)
		fc := rpc.FileConfig{CertFile: filepath.Join(dir, fmt.Sprintf("%d.crt", num)), KeyFile: filepath.Join(dir, fmt.Sprintf("%d.key", num)), CAFile: filepath.Join(dir, "ca.crt")}
		for f, b := range map[string][]byte{fc.CertFile: certPEM, fc.KeyFile: keyPEM, fc.CAFile: ca.PEM} {
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		src, err := rpc.NewFileSource(fc)
		if err != nil {
			t.Fatal(err)
		}
		srv := server.New(server.Config{
			Node: num, Elector: in.el, Systemd: in.sd, Source: src,
			Session: func(ctx context.Context) (*dlm.Client, error) { return dlm.New(ctx, dlm.WithSocket(n.DlmdSocket())) },
			Lookup: func(_ context.Context, m uint32) (string, error) {
				mu.Lock()
				defer mu.Unlock()
				return addrs[m], nil
			},
			NodeName: func(_ context.Context, m uint32) (string, error) { return rpctest.NodeName(m), nil },
		})
		for _, m := range nums {
			srv.Membership(m, true)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peers := rpc.NewServer(src)
		server.NewPeer(srv).Register(peers)
		go func() { _ = peers.Serve(ln) }()
		lln, _, err := localapi.Listen(filepath.Join(n.RunDir, "initfailover.sock"), "")
		if err != nil {
			t.Fatal(err)
		}
		local := grpc.NewServer(grpc.Creds(localapi.Credentials()))
		server.NewAPI(srv).Register(local)
		go func() { _ = local.Serve(lln) }()
		t.Cleanup(func() {
			local.Stop()
			peers.Stop()
			srv.Close()
		})
		mu.Lock()
		addrs[num] = ln.Addr().String()
		mu.Unlock()
	}
	defer func() {
		if o := tl.Overlaps(initCron); len(o) > 0 {
			t.Errorf("%s ran on two nodes at once:\n%v", initCron, o)
		}
	}()
	first := waitInit(t, ctx, nodes, nil)
	var asker, target *initNode
	for _, in := range nodes {
		switch {
		case in == first:
		case asker == nil:
			asker = in
		default:
			target = in
		}
	}
	askerRun := c.Nodes[slices.Index(nums, asker.num)].RunDir
	var out, errOut bytes.Buffer
	if code := cli.Main([]string{"--run-dir", askerRun, "init"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), fmt.Sprintf("init node: %d\n", first.num)) ||
		!strings.Contains(out.String(), "waiting") {
		t.Fatalf("ssi init: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	if code := cli.Main([]string{"--run-dir", askerRun, "nodes"}, &out, &errOut); code != 0 || !strings.Contains(out.String(), fmt.Sprintf("\n%d+ ", first.num)) ||
		!strings.Contains(out.String(), "+ is the init node") {
		t.Fatalf("ssi nodes does not mark node %d: exit %d:\n%s%s", first.num, code, out.String(), errOut.String())
	}
	out.Reset()
	if code := cli.Main([]string{"--run-dir", askerRun, "init", "move", fmt.Sprint(target.num)}, &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), fmt.Sprintf("from node %d to node %d", first.num, target.num)) {
		t.Fatalf("ssi init move: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	if got := waitInit(t, ctx, nodes, first); got != target {
		t.Fatalf("moved to node %d, node %d took it", target.num, got.num)
	}
	out.Reset()
	errOut.Reset()
	if code := cli.Main([]string{"--run-dir", askerRun, "service", "status", initCron, "--all"}, &out, &errOut); code != 0 ||
		strings.Count(out.String(), "active (running)") != 1 || strings.Count(out.String(), "inactive (dead)") != 2 {
		t.Fatalf("ssi service status --all: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	t.Logf("ssi service status %s --all:\n%s", initCron, out.String())
	out.Reset()
	errOut.Reset()
	if code := cli.Main([]string{"--run-dir", askerRun, "init", "move", "99"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "node 99 is not UP") {
		t.Fatalf("ssi init move 99: exit %d:\n%s%s", code, out.String(), errOut.String())
	}
}

// TestInitFailoverCutOff: the init node loses its Consul agent while its
// clmsd, dlmd and initfailover run on (cut off, not dead). The others
// declare it DOWN and stop answering its dlmd, which fences when its
// lease runs out and tells the election the lock is lost; the cut-off
// init kills its singleton, whose stop hangs, and the node that takes
// over starts it only after.
func TestInitFailoverCutOff(t *testing.T) {
	c := startDlm(t, 3, 0)
	ctx := ctxFor(t, 120*time.Second)
	var nums []uint32
	for _, n := range c.Nodes {
		nums = append(nums, uint32(numberOf(t, ctx, n)))
	}
	tl := &systemdfake.Timeline{}
	var nodes []*initNode
	for i, n := range c.Nodes {
		nodes = append(nodes, startElector(t, n, nums[i], nums, tl))
	}
	defer func() {
		if o := tl.Overlaps(initCron); len(o) > 0 {
			t.Errorf("%s ran on two nodes at once:\n%v\nevents:\n%v", initCron, o, tl.Events())
		}
	}()
	old := waitInit(t, ctx, nodes, nil)
	old.sd.Hang(initCron, true)
	cutAt := time.Now()
	if err := c.Nodes[slices.Index(nums, old.num)].Agent.Kill(); err != nil {
		t.Fatal(err)
	}
	next := waitInit(t, ctx, nodes, old)
	stopped, started := handover(t, tl, initCron, old.num, next.num)
	var killed bool
	for _, e := range tl.Events() {
		killed = killed || (e.Node == old.num && e.Unit == initCron && e.Op == "kill" && e.Time.After(cutAt))
	}
	if !killed {
		t.Errorf("the cut-off node's hung service was not killed:\n%v", tl.Events())
	}
	if !started.After(stopped) {
		t.Errorf("node %d started before node %d's copy was gone", next.num, old.num)
	}
	t.Logf("cut at %s: the old copy killed %v later, the new one started %v after that",
		cutAt.Format("15:04:05.000"), stopped.Sub(cutAt), started.Sub(stopped))
}
