package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/client/initnode"
	"github.com/openssi/openssi/daemons/initfailover/election"
	"github.com/openssi/openssi/daemons/initfailover/server"
	"github.com/openssi/openssi/daemons/initfailover/systemdfake"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/roottest"
	"github.com/openssi/openssi/internal/rpc"
	"github.com/openssi/openssi/internal/rpc/rpctest"
	initfailoverv1 "github.com/openssi/openssi/proto/initfailover/v1"
	initfailoverpeerv1 "github.com/openssi/openssi/proto/initfailoverpeer/v1"
)

// This file runs several initfailover Servers in the test process, each
// with its peer gRPC server (mutual TLS with per-node certificates) on
// loopback, its local API on a Unix socket, and a recording fake of
// systemd (systemd is not PID 1 on the test host).

type testNode struct {
	num    uint32
	sd     *systemdfake.Systemd
	addr   string
	socket string
}

type testCluster struct {
	t     *testing.T
	ca    *rpctest.CA
	dir   string
	mu    sync.Mutex
	nodes map[uint32]*testNode
}

func (c *testCluster) source(node uint32, name string, services ...string) rpc.Source {
	t := c.t
	t.Helper()
	certPEM, keyPEM := c.ca.IssueNode(t, name, services...)
	cfg := rpc.FileConfig{
		CertFile: filepath.Join(c.dir, fmt.Sprintf("%s-%d.crt", name, node)),
		KeyFile:  filepath.Join(c.dir, fmt.Sprintf("%s-%d.key", name, node)),
		CAFile:   filepath.Join(c.dir, "ca.crt"),
	}
	for f, b := range map[string][]byte{cfg.CertFile: certPEM, cfg.KeyFile: keyPEM, cfg.CAFile: c.ca.PEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src, err := rpc.NewFileSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

const webUnit = "web.service"

// startCluster starts n initfailover Servers (nodes 1..n, every node UP)
// whose systemd knows web.service.
func startCluster(t *testing.T, n int) *testCluster { t.Helper(); return startClusterWith(t, n, nil) }

// startClusterWith is startCluster, with each node's configuration
// changed by edit (nil: none) before its Server is made.
func startClusterWith(t *testing.T, n int, edit func(num uint32, cfg *server.Config)) *testCluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "initfailover-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // the helper runs as another user
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &testCluster{t: t, ca: rpctest.NewCA(t, "initfailover test CA"), dir: dir, nodes: map[uint32]*testNode{}}
	log := logrus.New()
	log.SetOutput(testWriter{t})
	tl := &systemdfake.Timeline{}
	for i := 1; i <= n; i++ {
		num := uint32(i)
		src := c.source(num, rpctest.NodeName(num), server.ServiceName)
		sd := systemdfake.New(num, tl, webUnit)
		cfg := server.Config{
			Node: num, Systemd: sd, Source: src, Log: log.WithField("node", num),
			Lookup: func(_ context.Context, m uint32) (string, error) {
				c.mu.Lock()
				defer c.mu.Unlock()
				if nd := c.nodes[m]; nd != nil {
					return nd.addr, nil
				}
				return "", fmt.Errorf("no node %d", m)
			},
			NodeName: func(_ context.Context, m uint32) (string, error) { return rpctest.NodeName(m), nil },
		}
		if edit != nil {
			edit(num, &cfg)
		}
		srv := server.New(cfg)
		for j := 1; j <= n; j++ {
			srv.Membership(uint32(j), true)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peers := rpc.NewServer(src)
		server.NewPeer(srv).Register(peers)
		go func() { _ = peers.Serve(ln) }()
		socket := filepath.Join(dir, fmt.Sprintf("initfailover%d.sock", num))
		lln, _, err := localapi.Listen(socket, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(socket, 0o666); err != nil {
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
		c.mu.Lock()
		c.nodes[num] = &testNode{num: num, sd: sd, addr: ln.Addr().String(), socket: socket}
		c.mu.Unlock()
	}
	return c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func (c *testCluster) client(n uint32) *initnode.Client {
	c.t.Helper()
	cl, err := initnode.New(context.Background(), initnode.WithSocket(c.nodes[n].socket))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

func lineSummary(lines []initnode.Unit) string {
	var b []string
	for _, l := range lines {
		if l.Err != "" {
			b = append(b, fmt.Sprintf("%d:%s", l.Node, l.Err))
		} else {
			b = append(b, fmt.Sprintf("%d:%s/%s/%d", l.Node, l.LoadState, l.ActiveState, l.MainCPID))
		}
	}
	return strings.Join(b, " ")
}

func cp(node uint32) int64 {
	c, _ := cpid.Make(node, 100)
	return int64(c)
}

// TestServiceAcrossNodes: ssi service on any or every node, one line per
// node, with clear lines for unknown units and nodes.
func TestServiceAcrossNodes(t *testing.T) {
	c := startCluster(t, 3)
	cl := c.client(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name   string
		action initnode.Action
		unit   string
		target []initnode.Target
		want   string
	}{
		{"status here", initnode.Status, webUnit, nil, "1:loaded/inactive/0"},
		{"start on 2 and 3", initnode.Start, webUnit, []initnode.Target{initnode.Nodes(3, 2)}, fmt.Sprintf("2:loaded/active/%d 3:loaded/active/%d", cp(2), cp(3))},
		{"status everywhere", initnode.Status, webUnit, []initnode.Target{initnode.All()}, fmt.Sprintf("1:loaded/inactive/0 2:loaded/active/%d 3:loaded/active/%d", cp(2), cp(3))},
		{"restart everywhere", initnode.Restart, webUnit, []initnode.Target{initnode.All()}, fmt.Sprintf("1:loaded/active/%d 2:loaded/active/%d 3:loaded/active/%d", cp(1), cp(2), cp(3))},
		{"stop on 3", initnode.Stop, webUnit, []initnode.Target{initnode.Nodes(3)}, "3:loaded/inactive/0"},
		{"unknown unit", initnode.Start, "nope.service", []initnode.Target{initnode.Nodes(1, 2)}, "1:unit nope.service not found 2:unit nope.service not found"},
		{"unknown node", initnode.Status, webUnit, []initnode.Target{initnode.Nodes(7)}, "7:node 7 is not UP"},
	} {
		lines, err := cl.Service(ctx, tc.action, tc.unit, tc.target...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := lineSummary(lines); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if !c.nodes[2].sd.Active(webUnit) || c.nodes[3].sd.Active(webUnit) {
		t.Error("the units' states are not what the actions left")
	}
	if _, err := cl.Service(ctx, initnode.Start, "web", initnode.All()); !errors.Is(err, initnode.ErrRefused) || !strings.Contains(err.Error(), "not a unit name") {
		t.Errorf("a unit name without its type: %v", err)
	}
}

// TestPeerMustBeTheOriginsInitfailover: a unit action from another node
// is believed only from the initfailover whose certificate names the
// origin, and a change only for root there; a status for anyone.
func TestPeerMustBeTheOriginsInitfailover(t *testing.T) {
	c := startCluster(t, 2)
	for _, tc := range []struct {
		name     string
		node     string
		services []string
		uid      uint32
		action   initfailoverv1.Action
		code     codes.Code
	}{
		{"node 3's initfailover claiming node 1", rpctest.NodeName(3), []string{server.ServiceName}, 0, initfailoverv1.Action_ACTION_START, codes.PermissionDenied},
		{"node 1's dlmd", rpctest.NodeName(1), []string{rpc.ServiceName("dlmd")}, 0, initfailoverv1.Action_ACTION_START, codes.PermissionDenied},
		{"a user's start from node 1", rpctest.NodeName(1), []string{server.ServiceName}, 1000, initfailoverv1.Action_ACTION_START, codes.PermissionDenied},
		{"a user's status from node 1", rpctest.NodeName(1), []string{server.ServiceName}, 1000, initfailoverv1.Action_ACTION_STATUS, codes.OK},
		{"root's start from node 1", rpctest.NodeName(1), []string{server.ServiceName}, 0, initfailoverv1.Action_ACTION_START, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.nodes[2].sd.Stop(context.Background(), webUnit)
			src := c.source(9, tc.node, tc.services...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := rpc.Dial(ctx, src, c.nodes[2].addr, rpc.NodeIdentity(server.ServiceName, rpctest.NodeName(2)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_, err = initfailoverpeerv1.NewInitfailoverPeerClient(conn).Unit(ctx, &initfailoverpeerv1.PeerUnit{Origin: 1, CallerUid: tc.uid, Action: tc.action, Unit: webUnit})
			if status.Code(err) != tc.code {
				t.Fatalf("%v, want %v", err, tc.code)
			}
			started := c.nodes[2].sd.Active(webUnit)
			if want := tc.code == codes.OK && tc.action == initfailoverv1.Action_ACTION_START; started != want {
				t.Fatalf("the unit started: %v, want %v", started, want)
			}
			_, err = initfailoverpeerv1.NewInitfailoverPeerClient(conn).Move(ctx, &initfailoverpeerv1.PeerMove{Origin: 1, CallerUid: tc.uid, Node: 1})
			if tc.code == codes.PermissionDenied && status.Code(err) != codes.PermissionDenied {
				t.Fatalf("move: %v, want PermissionDenied", err)
			}
		})
	}
}

// helperEnv makes the test binary an initnode client (see TestMain): a
// JSON helperCall.
const helperEnv = "INITFAILOVER_TEST_HELPER"

type helperCall struct {
	Socket string
	Action string
	Unit   string
	Move   int
	// Isolate: ssi isolate of that target (a dry run), every node UP.
	Isolate string
}

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		os.Exit(helper(v))
	}
	os.Exit(m.Run())
}

func helper(v string) int {
	var call helperCall
	if err := json.Unmarshal([]byte(v), &call); err != nil {
		fmt.Println(err)
		return 100
	}
	ctx := context.Background()
	c, err := initnode.New(ctx, initnode.WithSocket(call.Socket))
	if err != nil {
		fmt.Println(err)
		return 101
	}
	defer c.Close()
	switch {
	case call.Isolate != "":
		err = c.Isolate(ctx, call.Isolate, &fakeView{self: 1, nodes: 2}, nil, initnode.IsolateOptions{DryRun: true})
	case call.Move != 0:
		_, err = c.Move(ctx, call.Move)
	default:
		a, _ := initnode.ParseAction(call.Action)
		_, err = c.Service(ctx, a, call.Unit, initnode.All())
	}
	if errors.Is(err, initnode.ErrPermission) {
		fmt.Println(err)
		return 3
	}
	if err != nil {
		fmt.Println(err)
		return 1
	}
	return 0
}

// TestLocalChangesAreRoots: through the local socket a user may read a
// unit's status on every node but not start or stop one, nor move the
// init role (the uid comes from SO_PEERCRED).
func TestLocalChangesAreRoots(t *testing.T) {
	roottest.Need(t)
	c := startCluster(t, 2)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(c.dir, "helper")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		call helperCall
		code int
	}{
		{helperCall{Action: "status", Unit: webUnit}, 0},
		{helperCall{Action: "start", Unit: webUnit}, 3},
		{helperCall{Action: "disable", Unit: webUnit}, 3},
		{helperCall{Move: 2}, 3},
		{helperCall{Isolate: "maint.target"}, 3},
	} {
		tc.call.Socket = c.nodes[1].socket
		j, _ := json.Marshal(tc.call)
		cmd := exec.Command(bin)
		cmd.Env = []string{helperEnv + "=" + string(j)}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code {
			t.Errorf("%+v as uid 65534: exit %d, want %d: %s", tc.call, code, tc.code, out)
		}
	}
	for _, n := range c.nodes {
		if n.sd.Active(webUnit) {
			t.Errorf("a user started %s on node %d", webUnit, n.num)
		}
	}
}

// TestServiceNodeLists: a node list is checked before anything is done
// (numbers 1..511, at most 511 of them, one clear line), duplicates act
// once, and a call acts on at most 16 nodes at a time.
func TestServiceNodeLists(t *testing.T) {
	c := startCluster(t, 2)
	cl := c.client(1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	million := make([]int, 1_000_000)
	for i := range million {
		million[i] = i + 1
	}
	for _, tc := range []struct {
		name  string
		nodes []int
		want  string
	}{
		{"node 0", []int{1, 0}, "initfailover: ssi service: 0 is not a node number (1..511)"},
		{"node 512", []int{512}, "initfailover: ssi service: 512 is not a node number (1..511)"},
		{"a million nodes", million, "initfailover: ssi service: 1000000 nodes named: at most 511"},
		{"512 nodes", million[:512], "initfailover: ssi service: 512 nodes named: at most 511"},
	} {
		_, err := cl.Service(ctx, initnode.Status, webUnit, initnode.Nodes(tc.nodes...))
		if !errors.Is(err, initnode.ErrRefused) || err.Error() != tc.want {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	lines, err := cl.Service(ctx, initnode.Status, webUnit, initnode.Nodes(2, 1, 2, 2, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := lineSummary(lines); got != "1:loaded/inactive/0 2:loaded/inactive/0" {
		t.Errorf("duplicates: %s", got)
	}

	// 200 UP nodes whose initfailover cannot be found: at most 16
	// lookups at once.
	var mu sync.Mutex
	inFlight, most := 0, 0
	srv := server.New(server.Config{
		Node: 1, Systemd: systemdfake.New(1, &systemdfake.Timeline{}, webUnit),
		NodeName: func(_ context.Context, m uint32) (string, error) { return rpctest.NodeName(m), nil },
		Lookup: func(context.Context, uint32) (string, error) {
			mu.Lock()
			inFlight++
			most = max(most, inFlight)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond) // hold the slot a moment
			mu.Lock()
			inFlight--
			mu.Unlock()
			return "", errors.New("no address")
		},
	})
	defer srv.Close()
	for n := uint32(1); n <= 200; n++ {
		srv.Membership(n, true)
	}
	fc := serveLocal(t, srv, filepath.Join(c.dir, "fanout.sock"))
	lines, err = fc.Service(ctx, initnode.Status, webUnit, initnode.All())
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 200 || lines[199].Err == "" {
		t.Errorf("%d lines, the last %+v", len(lines), lines[len(lines)-1])
	}
	if most > 16 {
		t.Errorf("%d nodes acted on at once, want at most 16", most)
	}
}

// serveLocal serves srv's local API on socket and returns a client of it.
func serveLocal(t *testing.T, srv *server.Server, socket string) *initnode.Client {
	t.Helper()
	lln, _, err := localapi.Listen(socket, "")
	if err != nil {
		t.Fatal(err)
	}
	local := grpc.NewServer(grpc.Creds(localapi.Credentials()))
	server.NewAPI(srv).Register(local)
	go func() { _ = local.Serve(lln) }()
	t.Cleanup(local.Stop)
	cl, err := initnode.New(context.Background(), initnode.WithSocket(socket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestInitAsksDlmdSparingly: ssi init, open to every user, does not open
// a dlmd session per call: answers are shared for a second.
func TestInitAsksDlmdSparingly(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	sessions := 0
	srv := server.New(server.Config{
		Node: 1,
		Session: func(context.Context) (*dlm.Client, error) {
			mu.Lock()
			sessions++
			mu.Unlock()
			return nil, errors.New("dlmd is not there")
		},
	})
	defer srv.Close()
	cl := serveLocal(t, srv, filepath.Join(dir, "init.sock"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := cl.Init(ctx); err == nil || !strings.Contains(err.Error(), "dlmd is not there") {
				t.Errorf("Init: %v, want dlmd's error", err)
			}
		}()
	}
	wg.Wait()
	if sessions > 2 {
		t.Errorf("50 calls of Init opened %d dlmd sessions", sessions)
	}
}

// TestMoveChecksTheTarget: ssi init move is refused with one line before
// anything stops when the target cannot take the role: no election there
// (no systemd), its initfailover down, or not queued for the lock.
func TestMoveChecksTheTarget(t *testing.T) {
	roottest.Need(t) // Move is root's: the test's uid on the socket
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var electors sync.WaitGroup
	runCtx, stopElectors := context.WithCancel(ctx)
	defer func() { stopElectors(); electors.Wait() }()
	waiting := server.NewElector(server.ElectorConfig{
		Self: 2, Target: "openssi-init.target", StopTimeout: time.Second, Systemd: systemdfake.New(2, &systemdfake.Timeline{}),
		// No dlmd: it queues for ever, waiting.
		Session: func(context.Context) (*dlm.Client, error) { return nil, errors.New("no dlmd") },
		Log:     logrus.New(),
	})
	electors.Add(1)
	go func() { defer electors.Done(); _ = waiting.Run(runCtx, nil) }()
	for st, _, _ := waiting.Status(); st != election.Waiting; st, _, _ = waiting.Status() {
		if ctx.Err() != nil {
			t.Fatalf("the elector never queued: %v", st)
		}
		runtime.Gosched()
	}
	c := startClusterWith(t, 4, func(num uint32, cfg *server.Config) {
		cfg.AskInit = func(context.Context) (uint32, error) { return 3, nil }
		if num == 2 {
			cfg.Elector = waiting
		}
		if num == 1 {
			lookup := cfg.Lookup
			cfg.Lookup = func(ctx context.Context, m uint32) (string, error) {
				if m == 4 {
					return "127.0.0.1:1", nil // its initfailover is down
				}
				return lookup(ctx, m)
			}
		}
	})
	cl := c.client(1)
	for _, tc := range []struct {
		name   string
		target int
		want   string
	}{
		{"no election on the target", 1, "initfailover: node 1 cannot take the init role: systemd is not its init"},
		{"the target's initfailover is down", 4, "initfailover: node 4 cannot take the init role: its initfailover does not answer"},
		// Node 2 is waiting: the move goes on to node 3, which has
		// no election in this test.
		{"a waiting target", 2, "initfailover: no election on this node"},
	} {
		_, err := cl.Move(ctx, tc.target)
		if !errors.Is(err, initnode.ErrRefused) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
