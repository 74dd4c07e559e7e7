package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/load"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/rpc"
	"github.com/openssi/openssi/internal/rpc/rpctest"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// idleProc is /proc of an idle node with 2 CPUs: every node of a test
// measures the same, so placement is decided by the wiring alone.
func idleProc(name string) ([]byte, error) {
	switch name {
	case "loadavg":
		return []byte("0.10 0.20 0.30 1/200 4242\n"), nil
	case "stat":
		return []byte("cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\nprocs_running 1\n"), nil
	case "meminfo":
		return []byte("MemTotal: 4000000 kB\nMemAvailable: 3000000 kB\n"), nil
	}
	return nil, fmt.Errorf("no /proc/%s", name)
}

// busyProc is idleProc of a node whose run queue is the programs it runs
// (as for CPU-bound jobs).
func busyProc(s *Server) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if name != "stat" {
			return idleProc(name)
		}
		s.mu.Lock()
		n := 1
		for _, k := range s.execs {
			n += k
		}
		s.mu.Unlock()
		return fmt.Appendf(nil, "cpu  1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\nprocs_running %d\n", n), nil
	}
}

// runLoad runs every node's load exchange until the test ends.
func runLoad(t *testing.T, c *testCluster, n int) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); c.node(uint32(i)).srv.RunLoad(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// waitHeard polls node n's Loads until it has a vector of each of nodes.
func waitHeard(t *testing.T, c *testCluster, n uint32, nodes ...int) vproc.LoadView {
	t.Helper()
	cl := c.client(n)
	deadline := time.Now().Add(15 * time.Second)
	for {
		v, err := cl.Loads(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, l := range v.Loads {
			got = append(got, l.Node)
		}
		if !slices.ContainsFunc(nodes, func(m int) bool { return !slices.Contains(got, m) }) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d heard %v, want %v", n, got, nodes)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fastLoad() Config {
	return Config{Load: LoadConfig{Interval: 20 * time.Millisecond, ReadProc: idleProc}}
}

// TestLoadVectorsFlow: each node sends its vector to one random peer per
// interval, and every node soon hears all the others.
func TestLoadVectorsFlow(t *testing.T) {
	c := startClusterWith(t, 3, fastLoad())
	runLoad(t, c, 3)
	for n := uint32(1); n <= 3; n++ {
		v := waitHeard(t, c, n, 1, 2, 3)
		for _, l := range v.Loads {
			if l.Self != (l.Node == int(n)) || l.CPUs != 2 || l.RunQueue != 0 || l.Load1 != 0.10 || l.FreeMem != 3000000<<10 {
				t.Errorf("node %d believes %+v", n, l)
			}
		}
	}
}

// TestForgedLoadVectorRefused: a vector is believed only from the vprocd
// of the node it names; node 1's vprocd claiming to be node 3 is refused
// and node 2 does not believe it.
func TestForgedLoadVectorRefused(t *testing.T) {
	c := startCluster(t, 3)
	src := c.source(9, rpctest.NodeName(1), ServiceName)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := rpc.Dial(ctx, src, c.node(2).addr, rpc.NodeIdentity(ServiceName, rpctest.NodeName(2)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pc := vprocpeerv1.NewVprocLoadPeerClient(conn)
	at := time.Now().UnixNano()
	_, err = pc.Push(ctx, &vprocv1.LoadVector{Node: 3, RunQueue: 0, Cpus: 64, FreeMem: 1 << 40, AtUnixNano: at})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("node 1 pushing node 3's vector: %v, want PermissionDenied", err)
	}
	if _, err := pc.Push(ctx, &vprocv1.LoadVector{Node: 1, RunQueue: 5, Cpus: 2, AtUnixNano: at}); err != nil {
		t.Fatalf("node 1 pushing its own vector: %v", err)
	}
	v, err := c.client(2).Loads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range v.Loads {
		if l.Node == 3 {
			t.Errorf("node 2 believes the forged vector %+v", l)
		}
	}
	if len(v.Loads) != 1 || v.Loads[0].Node != 1 || v.Loads[0].RunQueue != 5 {
		t.Errorf("node 2 believes %+v, want node 1's own vector only", v.Loads)
	}
}

// inject sets what node n measured of itself and heard of others.
func inject(t *testing.T, s *Server, self load.Vector, heard ...load.Vector) {
	t.Helper()
	now := time.Now()
	s.load.mu.Lock()
	defer s.load.mu.Unlock()
	self.At = now
	s.load.w.Measured(now, self)
	for _, v := range heard {
		v.At = now
		if err := s.load.w.Heard(now, v); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAutoPlacesOnLeastLoaded: --auto runs on the node with the lowest
// run queue per CPU among those node 1 has heard.
func TestAutoPlacesOnLeastLoaded(t *testing.T) {
	c := startCluster(t, 3)
	inject(t, c.node(1).srv, load.Vector{RunQueue: 4, CPUs: 2},
		load.Vector{Node: 2, RunQueue: 3, CPUs: 1}, load.Vector{Node: 3, RunQueue: 1, CPUs: 4})
	p, err := c.client(1).Exec(context.Background(), vproc.Auto, vproc.Cmd{Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(); err != nil || st.Code != 0 {
		t.Fatalf("exit %+v, %v", st, err)
	}
	if p.Node != 3 {
		t.Errorf("--auto ran on node %d (cpid %d), want 3", p.Node, p.Cpid)
	}
	// Without load information, --auto says so.
	_, err = c.client(2).Exec(context.Background(), vproc.Auto, vproc.Cmd{Args: []string{"true"}})
	if err == nil {
		t.Error("--auto on a node without load information ran")
	}
}

// TestAutoSpreads: 30 short jobs with --auto from one node, while the
// nodes exchange vectors that count the jobs they run, spread roughly
// evenly over 3 nodes.
func TestAutoSpreads(t *testing.T) {
	c := startClusterWith(t, 3, fastLoad())
	for n := uint32(1); n <= 3; n++ {
		s := c.node(n).srv
		s.load.cfg.ReadProc = busyProc(s)
	}
	runLoad(t, c, 3)
	waitHeard(t, c, 1, 1, 2, 3)
	cl := c.client(1)
	var procs []*vproc.Process
	for range 30 {
		p, err := cl.Exec(context.Background(), vproc.Auto, vproc.Cmd{Args: []string{"sleep", "0.3"}})
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	count := map[int]int{}
	for _, p := range procs {
		if st, err := p.Wait(); err != nil || st.Code != 0 {
			t.Fatalf("exit %+v, %v", st, err)
		}
		count[p.Node]++
	}
	t.Logf("30 jobs landed %v", count)
	for n := 1; n <= 3; n++ {
		if count[n] < 6 || count[n] > 14 {
			t.Errorf("30 jobs landed %v, want roughly 10 on each of nodes 1..3", count)
			break
		}
	}
}

// memLevels is a LevelStore in memory, shared by a test's nodes.
type memLevels struct {
	mu    sync.Mutex
	names map[string]bool
}

func (m *memLevels) List(context.Context) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for n := range m.names {
		out = append(out, n)
	}
	return out, nil
}

func (m *memLevels) Add(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.names[name] = true
	return nil
}

func (m *memLevels) Remove(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.names, name)
	return nil
}

// TestLoadLevel: a program registered for load leveling (openssi.yaml or
// `ssi loadlevel add`) is placed by load when run without a node; others
// run here. The runtime list is shared by the nodes.
func TestLoadLevel(t *testing.T) {
	store := &memLevels{names: map[string]bool{}}
	c := startClusterWith(t, 2, Config{Load: LoadConfig{LoadLevel: []string{"env"}, Levels: store}})
	ctx := context.Background()
	s1 := c.node(1).srv
	// Node 1 is busy, node 2 idle.
	inject(t, s1, load.Vector{RunQueue: 8, CPUs: 1}, load.Vector{Node: 2, RunQueue: 0, CPUs: 1})
	cl := c.client(1)
	ranOn := func(prog string) int {
		t.Helper()
		p, err := cl.Exec(ctx, 0, vproc.Cmd{Args: []string{prog}, Stdout: nopWriter{}})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := p.Wait(); err != nil || st.Code != 0 {
			t.Fatalf("%s: exit %+v, %v", prog, st, err)
		}
		return p.Node
	}
	if n := ranOn("true"); n != 1 {
		t.Errorf("true, not registered, ran on node %d, want 1", n)
	}
	if n := ranOn("/usr/bin/env"); n != 2 {
		t.Errorf("env, in openssi.yaml, ran on node %d, want 2", n)
	}
	if err := cl.AddLoadLevel(ctx, "true"); err != nil {
		t.Fatal(err)
	}
	cfg, rt, err := cl.LoadLevels(ctx)
	if err != nil || !slices.Equal(cfg, []string{"env"}) || !slices.Equal(rt, []string{"true"}) {
		t.Errorf("LoadLevels = %v %v %v, want [env] [true]", cfg, rt, err)
	}
	if n := ranOn("true"); n != 2 {
		t.Errorf("true, added, ran on node %d, want 2", n)
	}
	// Node 2 learns the runtime list on its next round.
	c.node(2).srv.loadTick(ctx, time.Now())
	if _, rt, err := c.client(2).LoadLevels(ctx); err != nil || !slices.Equal(rt, []string{"true"}) {
		t.Errorf("node 2's runtime list = %v %v, want [true]", rt, err)
	}
	for _, bad := range []string{"", "/bin/true", "a b"} {
		if err := cl.AddLoadLevel(ctx, bad); err == nil {
			t.Errorf("AddLoadLevel(%q) was taken", bad)
		}
	}
	if err := cl.RemoveLoadLevel(ctx, "env"); err == nil {
		t.Error("removing a program of openssi.yaml was taken")
	}
	if err := cl.RemoveLoadLevel(ctx, "true"); err != nil {
		t.Fatal(err)
	}
	if err := cl.RemoveLoadLevel(ctx, "true"); err == nil {
		t.Error("removing a program not registered was taken")
	}
	if n := ranOn("true"); n != 1 {
		t.Errorf("true, removed, ran on node %d, want 1", n)
	}
}

// TestLoadLevelRootOnly: only root changes the list, which decides where
// every user's programs run.
func TestLoadLevelRootOnly(t *testing.T) {
	store := &memLevels{names: map[string]bool{}}
	s := New(Config{Node: 1, Load: LoadConfig{Levels: store}})
	a := loadAPI{s: s}
	for _, tc := range []struct {
		uid  uint32
		code codes.Code
	}{{1000, codes.PermissionDenied}, {0, codes.OK}} {
		ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: localapi.AuthInfo{Cred: localapi.Cred{UID: tc.uid}}})
		_, err := a.SetLoadLevel(ctx, &vprocv1.SetLoadLevelRequest{Name: "make"})
		if status.Code(err) != tc.code {
			t.Errorf("uid %d: %v, want %v", tc.uid, err, tc.code)
		}
		if got := len(store.names); (tc.code == codes.OK) != (got == 1) {
			t.Errorf("uid %d: store holds %v", tc.uid, store.names)
		}
	}
	if _, err := a.SetLoadLevel(context.Background(), &vprocv1.SetLoadLevelRequest{Name: "make"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no credentials: %v, want Unauthenticated", err)
	}
}

type nopWriter struct{}

func (nopWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestMeasureRunnable: with LoadConfig.Runnable (a node in a container)
// the run queue is the node's own runnable tasks less the measuring one,
// not the kernel's procs_running; its error is the measurement's.
func TestMeasureRunnable(t *testing.T) {
	busyHost := func(name string) ([]byte, error) {
		if name == "stat" {
			return []byte("cpu0 1 2 3 4\ncpu1 1 2 3 4\nprocs_running 40\n"), nil
		}
		return idleProc(name)
	}
	for _, c := range []struct {
		name     string
		runnable func() (uint32, error)
		want     uint32
		err      string
	}{
		{name: "the kernel's", want: 39},
		{name: "own tasks", runnable: func() (uint32, error) { return 5, nil }, want: 4},
		{name: "none", runnable: func() (uint32, error) { return 0, nil }, want: 0},
		{name: "error", runnable: func() (uint32, error) { return 0, fmt.Errorf("proctable: boom") }, err: "proctable: boom"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := New(Config{Node: 1, Load: LoadConfig{ReadProc: busyHost, Runnable: c.runnable}})
			v, err := s.measure(time.Unix(100, 0))
			if c.err != "" {
				if err == nil || err.Error() != c.err {
					t.Fatalf("measure: %+v %v, want error %q", v, err, c.err)
				}
				return
			}
			if err != nil || v.RunQueue != c.want || v.CPUs != 2 {
				t.Fatalf("measure: %+v %v, want run queue %d on 2 CPUs", v, err, c.want)
			}
		})
	}
}

// TestMeasureTaskBusy: with LoadConfig.TaskBusy the run queue is the
// node's tasks' busy time since the previous measure over the time since,
// rounded: two spinners that wait for a CPU two thirds of the time count
// two, a daemon's short wake-ups nothing. Its error is the measurement's.
func TestMeasureTaskBusy(t *testing.T) {
	const s = time.Second
	readings := []load.TaskBusy{
		{1: 0, 2: 0},             // the first measure's two readings,
		{1: 0, 2: 0},             // a tenth of the interval apart
		{1: s, 2: s, 3: s / 100}, // a second later: two spinners and a daemon
		{1: 2 * s, 2: 2 * s, 3: s / 50, 4: s / 2}, // a task that started
	}
	calls := 0
	var failWith error
	s0 := New(Config{Node: 1, Load: LoadConfig{Interval: 10 * time.Millisecond, ReadProc: idleProc, TaskBusy: func() (map[int32]time.Duration, error) {
		if failWith != nil {
			return nil, failWith
		}
		calls++
		return readings[calls-1], nil
	}}})
	t0 := time.Unix(100, 0)
	if v, err := s0.measure(t0); err != nil || v.RunQueue != 0 || calls != 2 {
		t.Fatalf("first measure: %+v %v after %d readings, want run queue 0 after 2", v, err, calls)
	}
	for i, want := range []uint32{2, 3} {
		if v, err := s0.measure(t0.Add(time.Duration(i+1) * s)); err != nil || v.RunQueue != want {
			t.Fatalf("measure %d: %+v %v, want run queue %d", i+2, v, err, want)
		}
	}
	failWith = fmt.Errorf("proctable: boom")
	if _, err := s0.measure(t0.Add(3 * s)); err == nil || err.Error() != "proctable: boom" {
		t.Fatalf("measure: %v, want the reading's error", err)
	}
}
