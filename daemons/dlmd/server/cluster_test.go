package server

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	"github.com/openssi/openssi/daemons/dlmd/node"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/rpc"
	"github.com/openssi/openssi/internal/rpc/rpctest"
)

// This file runs several dlmd Servers in the test process, each with its
// peer gRPC server (mutual TLS) on loopback and its local API on a Unix
// socket, connected through a testNet that can break TCP streams,
// partition nodes and freeze them.

// ---- the network ----

// testNet dials the peer connections of every node. It knows which node
// dials which, so it can break the streams between two nodes (both stay
// UP: a redial works at once) or partition a node (its streams break and
// no connection to or from it can be made until it heals) or freeze a
// node (its traffic is black-holed: connections stay open and new ones
// are made, but no byte to or from it arrives, until it thaws).
type testNet struct {
	mu     sync.Mutex
	addrs  map[string]uint32 // listener address -> node
	conns  map[*netConn]bool
	parted map[uint32]bool
	frozen map[uint32]bool
	// frozenPairs black-holes the traffic between two nodes only
	// (lower node first).
	frozenPairs map[[2]uint32]bool
	cuts        int // connections closed by cut or partition
}

func newTestNet() *testNet {
	return &testNet{addrs: map[string]uint32{}, conns: map[*netConn]bool{}, parted: map[uint32]bool{}, frozen: map[uint32]bool{},
		frozenPairs: map[[2]uint32]bool{}}
}

// netConn is a peer connection from one node to another.
type netConn struct {
	net.Conn
	from, to uint32
	n        *testNet
}

// black reports whether the connection's traffic is black-holed.
func (c *netConn) black() bool {
	c.n.mu.Lock()
	defer c.n.mu.Unlock()
	return c.n.frozen[c.from] || c.n.frozen[c.to] || c.n.frozenPairs[pair(c.from, c.to)]
}

func pair(a, b uint32) [2]uint32 { return [2]uint32{min(a, b), max(a, b)} }

// Write drops what a frozen connection sends (the dialling side's
// bytes).
func (c *netConn) Write(p []byte) (int, error) {
	if c.black() {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// Read drops what a frozen connection receives (the accepting side's
// bytes): the reader waits on.
func (c *netConn) Read(p []byte) (int, error) {
	for {
		k, err := c.Conn.Read(p)
		if err != nil || !c.black() {
			return k, err
		}
	}
}

func (c *netConn) Close() error {
	c.n.mu.Lock()
	delete(c.n.conns, c)
	c.n.mu.Unlock()
	return c.Conn.Close()
}

// dialer returns the gRPC context dialer of node from.
func (n *testNet) dialer(from uint32) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		n.mu.Lock()
		to, ok := n.addrs[addr]
		blocked := n.parted[from] || n.parted[to]
		n.mu.Unlock()
		if !ok {
			return nil, fmt.Errorf("testnet: no node at %s", addr)
		}
		if blocked {
			return nil, fmt.Errorf("testnet: node %d -> %d: partitioned", from, to)
		}
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		c := &netConn{Conn: raw, from: from, to: to, n: n}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.parted[from] || n.parted[to] { // partitioned while dialling
			_ = raw.Close()
			return nil, fmt.Errorf("testnet: node %d -> %d: partitioned", from, to)
		}
		n.conns[c] = true
		return c, nil
	}
}

// closeWhere closes the live connections match selects; n.mu is held.
func (n *testNet) closeWhere(match func(c *netConn) bool) int {
	var out []*netConn
	for c := range n.conns {
		if match(c) {
			out = append(out, c)
			delete(n.conns, c)
		}
	}
	for _, c := range out {
		_ = c.Conn.Close()
	}
	n.cuts += len(out)
	return len(out)
}

// cut closes every live connection between a and b (either way).
func (n *testNet) cut(a, b uint32) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.closeWhere(func(c *netConn) bool { return c.from == a && c.to == b || c.from == b && c.to == a })
}

// partition cuts node off until heal.
func (n *testNet) partition(node uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.parted[node] = true
	n.closeWhere(func(c *netConn) bool { return c.from == node || c.to == node })
}

// freeze black-holes node's traffic until thaw: its connections stay
// open, silent both ways (what was dropped breaks their TLS once thawed).
func (n *testNet) freeze(node uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.frozen[node] = true
}

func (n *testNet) thaw(node uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.frozen, node)
}

// freezeBetween black-holes the traffic between a and b only, until
// thawBetween.
func (n *testNet) freezeBetween(a, b uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.frozenPairs[pair(a, b)] = true
}

func (n *testNet) thawBetween(a, b uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.frozenPairs, pair(a, b))
}

func (n *testNet) heal(node uint32) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.parted, node)
}

func (n *testNet) closed() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cuts
}

// ---- certificates ----

// source issues the dlmd leaf of node number node (Consul node
// rpctest.NodeName(node), identity openssi-dlmd.node<n>) from ca and
// returns a FileSource over it.
func source(t *testing.T, ca *rpctest.CA, dir string, node uint32) rpc.Source {
	t.Helper()
	certPEM, keyPEM := ca.IssueNode(t, rpctest.NodeName(node), ServiceName)
	cfg := rpc.FileConfig{
		CertFile: filepath.Join(dir, fmt.Sprintf("n%d.crt", node)),
		KeyFile:  filepath.Join(dir, fmt.Sprintf("n%d.key", node)),
		CAFile:   filepath.Join(dir, "ca.crt"),
	}
	files := map[string][]byte{cfg.CertFile: certPEM, cfg.KeyFile: keyPEM}
	if _, err := os.Stat(cfg.CAFile); err != nil {
		files[cfg.CAFile] = ca.PEM // once: the other nodes read it
	}
	for f, b := range files {
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

// ---- the lockspace store ----

// memStore is an in-memory LockspaceStore shared by the nodes.
type memStore struct {
	mu       sync.Mutex
	cfg      map[string]lockspace.Config
	explicit map[string]bool
}

func newMemStore() *memStore {
	return &memStore{cfg: map[string]lockspace.Config{}, explicit: map[string]bool{}}
}

func (m *memStore) Lookup(_ context.Context, name string) (lockspace.Config, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cfg[name]
	return c, ok, nil
}

func (m *memStore) Get(_ context.Context, name string, creator lockspace.Cred) (lockspace.Config, error) {
	if err := node.ValidStoredLockspace(name); err != nil {
		return lockspace.Config{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.cfg[name]; ok {
		return c, nil
	}
	c := lockspace.Config{UID: creator.UID, GID: creator.GID, System: strings.HasPrefix(name, SystemPrefix)}
	if c.System && creator.UID != 0 {
		return lockspace.Config{}, fmt.Errorf("dlm: create lockspace %q: root only: %w", name, lockspace.ErrAccess)
	}
	m.cfg[name] = c
	return c, nil
}

func (m *memStore) Create(_ context.Context, name string, cfg lockspace.Config, explicit bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.cfg[name]; ok {
		return fmt.Errorf("dlm: create lockspace %q: %w", name, lockspace.ErrExists)
	}
	m.cfg[name], m.explicit[name] = cfg, explicit
	return nil
}

func (m *memStore) Update(_ context.Context, name string, change func(*lockspace.Config) error) (LockspaceRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.cfg[name]
	if !ok {
		return LockspaceRecord{}, fmt.Errorf("dlm: %w", ErrNoLockspace)
	}
	if err := change(&c); err != nil {
		return LockspaceRecord{}, err
	}
	m.cfg[name], m.explicit[name] = c, true
	return LockspaceRecord{Name: name, Config: c, Explicit: true}, nil
}

func (m *memStore) Delete(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.cfg, name)
	delete(m.explicit, name)
	return nil
}

func (m *memStore) List(context.Context) ([]LockspaceRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []LockspaceRecord
	for n, c := range m.cfg {
		out = append(out, LockspaceRecord{Name: n, Config: c, Explicit: m.explicit[n]})
	}
	return out, nil
}

// ---- logs ----

// logBuf keeps the nodes' logs, shown when the test fails.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// fenceHook records when a node logs that it fenced.
type fenceHook struct {
	mu    sync.Mutex
	times []time.Time
}

func (h *fenceHook) Levels() []logrus.Level { return []logrus.Level{logrus.ErrorLevel} }

func (h *fenceHook) Fire(e *logrus.Entry) error {
	if strings.HasPrefix(e.Message, "fenced") {
		h.mu.Lock()
		h.times = append(h.times, e.Time)
		h.mu.Unlock()
	}
	return nil
}

func (h *fenceHook) list() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.times...)
}

// ---- the cluster ----

type testNode struct {
	num    uint32
	srv    *Server
	addr   string
	socket string
	ready  chan struct{}
	fences *fenceHook
	// stop stops this dlmd: its servers and its loop.
	stop func()
	// stopLoop stops its loop only.
	stopLoop func()
}

type testCluster struct {
	t   *testing.T
	net *testNet
	// nodes is written by the test's goroutine only; mu guards it
	// against Lookup, which the dlmd call.
	mu    sync.Mutex
	nodes map[uint32]*testNode
	nums  []uint32
	o     clusterOpts
	ca    *rpctest.CA
	dir   string
	store *memStore
	logs  *logBuf
}

type clusterOpts struct {
	lease time.Duration
	// leases: the nodes whose dlmd.lease is not lease.
	leases map[uint32]time.Duration
	toss   time.Duration // 0: Config's default
	// limits: every dlmd's limits (zero: none).
	limits node.Limits
	// maxSessions: every dlmd's MaxSessionsPerUID (0: none).
	maxSessions int
	// maxLockspaces: every dlmd's MaxLockspacesPerUID (0: the default).
	maxLockspaces int
}

// startCluster starts n dlmd (nodes 1..n) at epoch 1 with every node UP
// and waits until each can grant.
func startCluster(t *testing.T, n int, o clusterOpts) *testCluster {
	t.Helper()
	if o.lease == 0 {
		o.lease = 300 * time.Millisecond
	}
	c := &testCluster{t: t, net: newTestNet(), nodes: map[uint32]*testNode{}, o: o,
		ca: rpctest.NewCA(t, "dlmd test CA"), dir: t.TempDir(), store: newMemStore(), logs: &logBuf{}}
	for i := 1; i <= n; i++ {
		c.nums = append(c.nums, uint32(i))
	}
	t.Cleanup(func() {
		for _, num := range c.nums {
			if nd := c.nodes[num]; nd != nil && nd.stop != nil {
				nd.stop()
			}
		}
		if t.Failed() {
			out := c.logs.String()
			if len(out) > 200000 {
				out = "...\n" + out[len(out)-200000:]
			}
			t.Logf("dlmd logs:\n%s", out)
		}
	})
	// Listeners first: Lookup must know every address before any dial.
	lns := map[uint32]net.Listener{}
	for _, num := range c.nums {
		lns[num] = c.listen(num)
	}
	for _, num := range c.nums {
		c.run(num, lns[num])
	}
	for _, num := range c.nums {
		c.nodes[num].srv.Start(1, c.nums)
	}
	for _, num := range c.nums {
		c.waitReady(num)
	}
	return c
}

// listen makes the peer listener of node's next dlmd.
func (c *testCluster) listen(num uint32) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		c.t.Fatal(err)
	}
	nd := &testNode{num: num, addr: ln.Addr().String(), ready: make(chan struct{}),
		socket: filepath.Join(c.dir, fmt.Sprintf("%d-%d.sock", num, time.Now().UnixNano())), fences: &fenceHook{}}
	c.mu.Lock()
	c.nodes[num] = nd
	c.mu.Unlock()
	c.net.mu.Lock()
	c.net.addrs[ln.Addr().String()] = num
	c.net.mu.Unlock()
	return ln
}

func (c *testCluster) lookup(node uint32) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if nd := c.nodes[node]; nd != nil {
		return nd.addr, nil
	}
	return "", fmt.Errorf("no node %d", node)
}

// holderOf is the test clusters' membership of names: node number n is
// held by Consul node rpctest.NodeName(n), whose certificate source
// issues.
func holderOf(_ context.Context, n uint32) (string, error) { return rpctest.NodeName(n), nil }

// run starts node's dlmd on ln (not yet Started).
func (c *testCluster) run(num uint32, ln net.Listener) {
	t := c.t
	nd := c.nodes[num]
	logger := logrus.New()
	logger.SetOutput(c.logs)
	logger.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000000"})
	logger.SetLevel(logrus.InfoLevel)
	if os.Getenv("DLMD_TEST_DEBUG") != "" {
		logger.SetLevel(logrus.DebugLevel)
	}
	logger.AddHook(nd.fences)
	nd.srv = New(Config{
		Node:                num,
		Incarnation:         uint64(time.Now().UnixNano()),
		DeadlockInterval:    100 * time.Millisecond,
		Source:              source(t, c.ca, c.dir, num),
		Lookup:              c.lookup,
		NodeName:            holderOf,
		Dial:                []rpc.DialOption{rpc.WithGRPCOptions(grpc.WithContextDialer(c.net.dialer(num)))},
		Lease:               cmp.Or(c.o.leases[num], c.o.lease),
		Toss:                c.o.toss,
		Limits:              c.o.limits,
		MaxSessionsPerUID:   c.o.maxSessions,
		MaxLockspacesPerUID: c.o.maxLockspaces,
		Lockspaces:          c.store,
		Log:                 logger.WithField("node", num),
	})
	// Stop waits for the handlers, and stop below for Serve: a stopped
	// dlmd leaves no goroutine (TestStopJoinsEveryGoroutine).
	var serving sync.WaitGroup
	peer := rpc.NewServer(nd.srv.cfg.Source, grpc.WaitForHandlers(true))
	NewPeer(nd.srv).Register(peer)
	serving.Add(2)
	go func() {
		defer serving.Done()
		_ = peer.Serve(ln)
	}()

	lln, _, err := localapi.Listen(nd.socket, "")
	if err != nil {
		t.Fatal(err)
	}
	local := grpc.NewServer(grpc.Creds(localapi.Credentials()), grpc.WaitForHandlers(true))
	NewAPI(nd.srv).Register(local)
	go func() {
		defer serving.Done()
		_ = local.Serve(lln)
	}()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var once sync.Once
		_ = nd.srv.Run(ctx, nil, func() { once.Do(func() { close(nd.ready) }) })
	}()
	nd.stopLoop = func() {
		cancel()
		<-done
	}
	nd.stop = func() {
		local.Stop()
		peer.Stop()
		nd.stopLoop()
		serving.Wait()
	}
}

func (c *testCluster) waitReady(num uint32) {
	select {
	case <-c.nodes[num].ready:
	case <-time.After(10 * time.Second):
		c.t.Fatalf("node %d not ready after 10s", num)
	}
}

// stop stops node's dlmd, saying goodbye first when leave is set (as on
// SIGTERM).
func (c *testCluster) stop(num uint32, leave bool) {
	c.t.Helper()
	old := c.nodes[num]
	if leave {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := old.srv.Leave(ctx); err != nil {
			c.t.Errorf("node %d: leave: %v", num, err)
		}
		cancel()
	}
	old.stop()
	old.stop = nil
}

// start starts a new dlmd on node (stopped) and waits until it grants.
func (c *testCluster) start(num uint32) {
	c.t.Helper()
	c.run(num, c.listen(num))
	c.nodes[num].srv.Start(1, c.nums)
	c.waitReady(num)
}

// client opens a lock session on node; it is closed at the end of the test.
func (c *testCluster) client(ctx context.Context, node uint32) *dlm.Client {
	c.t.Helper()
	cl, err := dlm.New(ctx, dlm.WithSocket(c.nodes[node].socket))
	if err != nil {
		c.t.Fatalf("session on node %d: %v", node, err)
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// fences returns how many times node fenced (its "fenced" log entries).
func (c *testCluster) fences(node uint32) int { return len(c.nodes[node].fences.list()) }

// dump returns the locks of a lockspace on every node's master tables.
func (c *testCluster) dump(ls string) []*lockInfoAt {
	var out []*lockInfoAt
	for _, num := range c.nums {
		s := c.nodes[num].srv
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.call(ctx, func() {
			for _, r := range s.core.Dump(ls) {
				for _, l := range r.GetLocks() {
					out = append(out, &lockInfoAt{master: num, res: string(r.GetName()), node: l.GetNode(), client: l.GetClient(),
						state: lockspace.LockState(l.GetState())})
				}
			}
		})
		cancel()
		if err != nil {
			c.t.Fatalf("dump node %d: %v", num, err)
		}
	}
	return out
}

type lockInfoAt struct {
	master uint32
	res    string
	node   uint32
	client uint64
	state  lockspace.LockState
}

// waitFor polls cond every few milliseconds until it holds.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// resourceMasteredOn makes node the master of a fresh resource of ls and
// returns its name: mastering goes to the first requester, so a client of
// node locks it first, and keeps an NL lock on it (compatible with every
// mode) so that node stays its master.
func (c *testCluster) resourceMasteredOn(t *testing.T, ctx context.Context, ls string, node uint32, prefix string) string {
	t.Helper()
	r := fmt.Sprintf("%s-on%d", prefix, node)
	if _, err := c.client(ctx, node).Lock(ctx, ls, r, dlm.NL); err != nil {
		t.Fatalf("NL lock on %s from node %d: %v", r, node, err)
	}
	for _, li := range c.dump(ls) {
		if li.res == r && li.master != node {
			t.Fatalf("%s is mastered on node %d, not on node %d, its first requester", r, li.master, node)
		}
	}
	return r
}

func counterOf(v dlm.Value) int64 {
	return int64(v[0]) | int64(v[1])<<8 | int64(v[2])<<16 | int64(v[3])<<24
}

func putCounter(v *dlm.Value, n int64) {
	v[0], v[1], v[2], v[3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
}

// grant is how a queued Lock call ended, and when.
type grant struct {
	l   *dlm.Lock
	err error
	at  time.Time
}

// contend has a client on holder take r in EX and a client on node 1 ask
// for it too; it returns once node 1's request waits on the master, with
// the holder's client and where node 1's grant will come.
func (c *testCluster) contend(t *testing.T, ctx context.Context, ls, r string, holder uint32) (*dlm.Client, <-chan grant) {
	t.Helper()
	h := c.client(ctx, holder)
	if _, err := h.Lock(ctx, ls, r, dlm.EX); err != nil {
		t.Fatal(err)
	}
	c1 := c.client(ctx, 1)
	granted := make(chan grant, 1)
	go func() {
		l, err := c1.Lock(ctx, ls, r, dlm.EX)
		granted <- grant{l, err, time.Now()}
	}()
	c.waitQueued(t, ls, r, 1)
	return h, granted
}

// waitQueued waits until a request of node on r waits at its master.
func (c *testCluster) waitQueued(t *testing.T, ls, r string, node uint32) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("node %d's request on %s to queue on the master", node, r), func() bool {
		for _, li := range c.dump(ls) {
			if li.res == r && li.node == node && li.state == lockspace.StateWaiting {
				return true
			}
		}
		return false
	})
}

// lockFresh checks that a new client on node can lock and unlock res
// (within 10s); what names the step in the failure.
func (c *testCluster) lockFresh(t *testing.T, ctx context.Context, node uint32, ls, res, what string) {
	t.Helper()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	l, err := c.client(ctx, node).Lock(lctx, ls, res, dlm.EX)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// ---- the tests ----

// TestLinksSurviveBrokenStreams: clients on every node hammer a few
// resources with EX locks, counting their critical sections in the value
// blocks, while the TCP streams between random pairs of nodes keep being
// broken (the nodes stay UP and redial at once). The links must carry
// every message once and in order across the reconnections: nothing
// hangs, no two holders overlap, no increment is lost, and no node loses
// its lease.
func TestLinksSurviveBrokenStreams(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ls = "links"
	resources := []string{"hot", "r1", "r2", "r3"}
	type resState struct {
		holders atomic.Int64 // EX holders inside the critical section now
		done    atomic.Int64 // completed critical sections
	}
	st := map[string]*resState{}
	for _, r := range resources {
		st[r] = &resState{}
	}
	const perNode = 3
	var clients []*dlm.Client
	for _, num := range c.nums {
		for range perNode {
			cl := c.client(ctx, num)
			// NL locks keep the resources, and so their value blocks,
			// alive between holders.
			for _, r := range resources {
				if _, err := cl.Lock(ctx, ls, r, dlm.NL); err != nil {
					t.Fatal(err)
				}
			}
			clients = append(clients, cl)
		}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var loops atomic.Int64
	for w, cl := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer loops.Add(1)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := resources[0]
				if i%2 == 1 {
					r = resources[1+(w+i)%3]
				}
				s := st[r]
				lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
				l, err := cl.Lock(lctx, ls, r, dlm.EX, dlm.ValueBlock())
				lcancel()
				if err != nil {
					t.Errorf("worker %d (node %d): lock %s: %v", w, cl.Node(), r, err)
					return
				}
				if h := s.holders.Add(1); h != 1 {
					t.Errorf("mutual exclusion violated on %s: %d EX holders", r, h)
				}
				v, valid, ok := l.Value()
				if !ok || !valid {
					t.Errorf("worker %d: %s: value block read %v, valid %v", w, r, ok, valid)
				}
				n := s.done.Load()
				if got := counterOf(v); got != n {
					t.Errorf("worker %d: %s: value block counts %d critical sections, %d completed", w, r, got, n)
				}
				putCounter(&v, n+1)
				s.done.Store(n + 1)
				s.holders.Add(-1)
				if err := l.Unlock(ctx, dlm.WriteValue(v)); err != nil {
					t.Errorf("worker %d: unlock %s: %v", w, r, err)
					return
				}
			}
		}()
	}
	// Break streams between random pairs for ~2s.
	rnd := mrand.New(mrand.NewPCG(1, uint64(time.Now().UnixNano())))
	pairs := [][2]uint32{{1, 2}, {1, 3}, {2, 3}}
	cuts := 0
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) && !t.Failed() {
		time.Sleep(time.Duration(50+rnd.IntN(51)) * time.Millisecond)
		p := pairs[rnd.IntN(len(pairs))]
		c.net.cut(p[0], p[1])
		cuts++
	}
	close(stop)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(20 * time.Second):
		t.Fatalf("workers hang: %d of %d finished", loops.Load(), len(clients))
	}
	// The value blocks as the masters keep them.
	check := c.client(ctx, 1)
	total := int64(0)
	for _, r := range resources {
		l, err := check.Lock(ctx, ls, r, dlm.EX, dlm.ValueBlock())
		if err != nil {
			t.Fatalf("final lock %s: %v", r, err)
		}
		v, valid, _ := l.Value()
		if n := st[r].done.Load(); !valid || counterOf(v) != n {
			t.Errorf("%s: value block %d (valid %v), %d critical sections completed", r, counterOf(v), valid, n)
		}
		total += st[r].done.Load()
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i, cl := range clients {
		select {
		case <-cl.Done():
			t.Errorf("client %d (node %d): session ended: %v", i, cl.Node(), cl.Err())
		default:
		}
	}
	for _, num := range c.nums {
		if f := c.fences(num); f != 0 {
			t.Errorf("node %d fenced %d times", num, f)
		}
	}
	if total < 100 {
		t.Errorf("only %d critical sections in all", total)
	}
	t.Logf("%d cuts closed %d connections; %d critical sections", cuts, c.net.closed(), total)
}

// TestPartitionedNodeIsFencedBeforeItsLocksAreGranted: node 3's client
// holds EX on a resource, node 1's client waits for it; node 3 is
// partitioned and, at once, declared DOWN to nodes 1 and 2 (node 3 hears
// nothing). Node 3 must fence (its client's session ends with ErrLost)
// before node 1's client is granted the lock. After the heal and NODEUP
// node 3 serves again and its old session holds nothing.
func TestPartitionedNodeIsFencedBeforeItsLocksAreGranted(t *testing.T) {
	for _, master := range []uint32{3, 1} {
		t.Run(fmt.Sprintf("master%d", master), func(t *testing.T) {
			testPartitionFence(t, master, clusterOpts{})
		})
	}
}

func testPartitionFence(t *testing.T, master uint32, o clusterOpts) {
	c := startCluster(t, 3, o)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ls = "fence"
	r := c.resourceMasteredOn(t, ctx, ls, master, "res")
	c3, granted := c.contend(t, ctx, ls, r, 3)
	fenced := make(chan time.Time, 1)
	go func() {
		<-c3.Done()
		fenced <- time.Now()
	}()

	c.net.partition(3)
	// clmsd declares node 3 DOWN to the others; node 3 is cut off.
	c.nodes[1].srv.Membership(2, 3, false)
	c.nodes[2].srv.Membership(2, 3, false)

	var fenceObserved time.Time
	select {
	case fenceObserved = <-fenced:
	case <-time.After(5 * time.Second):
		t.Fatal("node 3 did not fence within 5s")
	}
	if err := c3.Err(); !errors.Is(err, dlm.ErrLost) {
		t.Fatalf("node 3's session ended with %v, want ErrLost", err)
	}
	var g grant
	select {
	case g = <-granted:
	case <-time.After(5 * time.Second):
		t.Fatal("node 1's client was not granted within 5s of the partition")
	}
	if g.err != nil {
		t.Fatalf("node 1's lock: %v", g.err)
	}
	if !fenceObserved.Before(g.at) {
		t.Errorf("node 1 was granted at %v, before node 3's client saw the fence at %v", g.at.Format("15:04:05.000000"), fenceObserved.Format("15:04:05.000000"))
	}
	if fs := c.nodes[3].fences.list(); len(fs) == 0 || !fs[0].Before(g.at) {
		t.Errorf("node 3 fenced at %v; node 1 was granted at %v", fs, g.at.Format("15:04:05.000000"))
	}
	t.Logf("fence seen %v before the grant", g.at.Sub(fenceObserved))

	// Heal; clmsd then brings node 3 back at epoch 3, and tells node 3
	// the events it missed.
	c.net.heal(3)
	c.nodes[1].srv.Membership(3, 3, true)
	c.nodes[2].srv.Membership(3, 3, true)
	c.nodes[3].srv.Membership(2, 3, false)
	c.nodes[3].srv.Membership(3, 3, true)

	c.lockFresh(t, ctx, 3, ls, "after-heal", "node 3 after the heal")
	// Node 1 steps down to NL (and waits for the master to agree): the
	// resource must then be free for EX: node 3's old lock did not come
	// back with node 3.
	if err := g.l.Convert(ctx, dlm.NL); err != nil {
		t.Fatalf("node 1 convert to NL: %v", err)
	}
	c2 := c.client(ctx, 2)
	if _, err := c2.Lock(ctx, ls, r, dlm.EX, dlm.NoQueue()); err != nil {
		t.Fatalf("node 2 EX NoQueue on %s after the heal: %v", r, err)
	}
	for _, li := range c.dump(ls) {
		if li.node == 3 && li.client == c3.Owner() {
			t.Errorf("node 3's fenced session still has a lock on %s (master %d)", li.res, li.master)
		}
	}
}

// TestNodeDownSelfFences: a node that is told it is DOWN fences at once:
// its clients' sessions end with ErrLost; what they held goes to the
// others; it serves again once UP.
func TestNodeDownSelfFences(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ls = "selffence"
	r := c.resourceMasteredOn(t, ctx, ls, 3, "res")
	c2, granted := c.contend(t, ctx, ls, r, 2)
	start := time.Now()
	c.nodes[2].srv.Membership(2, 2, false)
	select {
	case <-c2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("node 2's session did not end within 5s of its NODEDOWN")
	}
	took := time.Since(start)
	if err := c2.Err(); !errors.Is(err, dlm.ErrLost) {
		t.Fatalf("node 2's session ended with %v, want ErrLost", err)
	}
	if took >= c.nodes[2].srv.cfg.Lease {
		t.Errorf("node 2's session ended %v after its NODEDOWN: not at once", took)
	}
	c.nodes[1].srv.Membership(2, 2, false)
	c.nodes[3].srv.Membership(2, 2, false)
	select {
	case g := <-granted:
		if g.err != nil {
			t.Fatalf("node 1's lock: %v", g.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("node 1's client was not granted within 5s")
	}
	for _, num := range c.nums {
		c.nodes[num].srv.Membership(3, 2, true)
	}
	c.lockFresh(t, ctx, 2, ls, "after", "node 2 after NODEUP")
	t.Logf("node 2's session ended %v after its NODEDOWN", took)
}

// TestShortPartitionFencesAndRejoins: node 3 is cut off for longer than
// the lease but too briefly for the membership to change. It fences; once
// healed it rejoins as a new dlmd, and what its old session held goes to
// the waiter on node 1.
func TestShortPartitionFencesAndRejoins(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ls = "short"
	r := c.resourceMasteredOn(t, ctx, ls, 2, "res")
	c3, granted := c.contend(t, ctx, ls, r, 3)
	c.net.partition(3)
	select {
	case <-c3.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("node 3 did not fence within 5s")
	}
	if err := c3.Err(); !errors.Is(err, dlm.ErrLost) {
		t.Fatalf("node 3's session ended with %v, want ErrLost", err)
	}
	c.net.heal(3)
	select {
	case g := <-granted:
		if g.err != nil {
			t.Fatalf("node 1's lock: %v", g.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node 1's client was not granted within 10s of the heal")
	}
	c.lockFresh(t, ctx, 3, ls, "after-heal", "node 3 after the heal")
}

// TestSilentMasterIsDetectedWithinTheLease: node 2's dlmd traffic is
// black-holed while it stays UP (no connection breaks, the membership
// does not change, nodes 1 and 3 keep their lease). A request of node 1
// already waiting on a resource node 2 masters, and one made after the
// freeze, must fail within the lease (plus the ping period, a tick and
// slack) with an error naming the silent master, not wait for the
// caller's own deadline; nodes 1 and 3 do not fence, and once node 2
// thaws (it fenced, hearing from no majority, and rejoins) node 1 locks
// the resource again.
func TestSilentMasterIsDetectedWithinTheLease(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ls = "silent"
	lease := c.o.lease
	r := c.resourceMasteredOn(t, ctx, ls, 2, "res")
	queued := c.resourceMasteredOn(t, ctx, ls, 2, "queued")
	_, waiting := c.contend(t, ctx, ls, queued, 3)
	c1 := c.client(ctx, 1)
	if _, err := c1.Lock(ctx, ls, r, dlm.NL); err != nil { // node 1 knows r's master
		t.Fatal(err)
	}

	c.net.freeze(2)
	start := time.Now()
	// Today's code waits for the caller's deadline: far past the bound.
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	defer lcancel()
	_, err := c1.Lock(lctx, ls, r, dlm.EX)
	took := time.Since(start)
	bound := lease + 2*c.nodes[1].srv.core.PingEvery() + 2*tick + 700*time.Millisecond
	switch {
	case err == nil:
		t.Fatal("node 1 was granted EX on a resource of a black-holed master")
	case errors.Is(err, context.DeadlineExceeded):
		t.Fatalf("node 1's lock hung until its deadline (%v): %v", took, err)
	case !errors.Is(err, dlm.ErrCancelled) || !strings.Contains(err.Error(), "master node 2 unreachable"):
		t.Fatalf("node 1's lock failed with %q, want it cancelled, naming the unreachable master", err)
	}
	if took > bound {
		t.Errorf("node 1's lock failed %v after the freeze, past the bound %v", took, bound)
	}
	select {
	case g := <-waiting:
		if !errors.Is(g.err, dlm.ErrCancelled) {
			t.Fatalf("node 1's queued request on the black-holed master ended with %v, want ErrCancelled", g.err)
		}
		if d := g.at.Sub(start); d > bound {
			t.Errorf("node 1's queued request failed %v after the freeze, past the bound %v", d, bound)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("node 1's queued request on the silent master still waits 10s after the freeze")
	}
	for _, n := range []uint32{1, 3} {
		if f := c.fences(n); f != 0 {
			t.Errorf("node %d fenced %d times while only node 2 was silent", n, f)
		}
	}

	// Once node 2 thaws, its links are redialled (a dial into the frozen
	// network times out first) and it rejoins as a new dlmd; until then
	// a request of node 1 fails after a lease, and is tried again.
	c.net.thaw(2)
	waitFor(t, 20*time.Second, "node 1 to lock r again after node 2 thawed", func() bool {
		lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
		defer lcancel()
		l, err := c1.Lock(lctx, ls, r, dlm.EX)
		if err != nil {
			if !errors.Is(err, dlm.ErrCancelled) && !errors.Is(err, dlm.ErrLost) {
				t.Fatalf("node 1's lock after the thaw: %v", err)
			}
			return false
		}
		return l.Unlock(ctx) == nil
	})
	t.Logf("lease %v: node 1's lock failed %v after the freeze with %q", lease, took, err)
}

// TestSilentLinkLeavesNoLockBehind: only the traffic between nodes 1 and
// 2 is black-holed; every node keeps its lease through node 3. Node 1's
// lock request on a resource node 2 masters is cancelled within the
// lease; once the link thaws, node 2 gets the request after all, and the
// cancel and unlock node 1 queued behind it: nothing of node 1's request
// is left on the master, and node 3 takes the resource in EX.
func TestSilentLinkLeavesNoLockBehind(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ls = "silentlink"
	r := c.resourceMasteredOn(t, ctx, ls, 2, "res")
	c1 := c.client(ctx, 1)
	if _, err := c1.Lock(ctx, ls, r, dlm.NL); err != nil {
		t.Fatal(err)
	}
	c.net.freezeBetween(1, 2)
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	defer lcancel()
	if _, err := c1.Lock(lctx, ls, r, dlm.EX); !errors.Is(err, dlm.ErrCancelled) {
		t.Fatalf("node 1's lock on the silent master: %v, want ErrCancelled", err)
	}
	s1 := c.nodes[1].srv
	pending := func() int {
		n := -1
		if err := s1.call(ctx, func() {
			if p := s1.peersOut[2]; p != nil {
				n = p.log.Pending()
			}
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := pending(); n < 3 {
		t.Fatalf("node 1's link to node 2 holds %d messages, want at least the request, its cancel and its unlock", n)
	}
	c.net.thawBetween(1, 2)
	waitFor(t, 10*time.Second, "node 1's link to node 2 to deliver what it holds", func() bool { return pending() == 0 })
	held := 0
	for _, li := range c.dump(ls) {
		if li.res == r && li.node == 1 {
			if li.state != lockspace.StateGranted {
				t.Fatalf("node 1's cancelled request is left on the master:%s", c.describe(ls))
			}
			held++
		}
	}
	if held != 1 {
		t.Fatalf("node 1 holds %d locks on %s at the master, want its NL only:%s", held, r, c.describe(ls))
	}
	c.lockFresh(t, ctx, 3, ls, r, "node 3 after the link thawed")
	for _, n := range c.nums {
		if f := c.fences(n); f != 0 {
			t.Errorf("node %d fenced %d times while only the link 1-2 was silent", n, f)
		}
	}
}

// TestDeadlockAcrossNodesIsBroken: two owners on two nodes each hold what
// the other waits for, on resources mastered on different nodes: one of
// the requests is refused with ErrDeadlock, the other is granted once the
// victim's owner gives way.
func TestDeadlockAcrossNodesIsBroken(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ls = "deadlock"
	x := c.resourceMasteredOn(t, ctx, ls, 2, "x")
	y := c.resourceMasteredOn(t, ctx, ls, 3, "y")
	a := c.client(ctx, 1)
	b := c.client(ctx, 2)
	la, err := a.Lock(ctx, ls, x, dlm.EX)
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.Lock(ctx, ls, y, dlm.EX)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		who string
		err error
	}
	res := make(chan result, 2)
	go func() {
		_, err := a.Lock(ctx, ls, y, dlm.EX)
		res <- result{"a", err}
	}()
	go func() {
		_, err := b.Lock(ctx, ls, x, dlm.EX)
		res <- result{"b", err}
	}()
	start := time.Now()
	var first result
	select {
	case first = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("the deadlock was not broken within 10s")
	}
	if !errors.Is(first.err, dlm.ErrDeadlock) {
		t.Fatalf("first result (%s): %v, want ErrDeadlock", first.who, first.err)
	}
	t.Logf("deadlock broken after %v", time.Since(start))
	if first.who == "a" {
		_ = la.Unlock(ctx)
	} else {
		_ = lb.Unlock(ctx)
	}
	select {
	case second := <-res:
		if second.err != nil {
			t.Fatalf("second request (%s): %v", second.who, second.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the survivor was not granted within 10s")
	}
}

// TestRepeatedPartitionsConverge: nodes are cut off, one or two at a
// time, for random spans around the lease, with no membership change
// (too short for clmsd to notice), while a client on every node keeps
// locking. Nodes fence and come back as new dlmd, sometimes in the middle
// of each other's recoveries or while their links reconnect. Once the
// network heals, every node must serve again and nothing may be left
// held by a session that is gone.
func TestRepeatedPartitionsConverge(t *testing.T) {
	c := startCluster(t, 3, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const ls = "churn"
	resources := []string{"a", "b", "c"}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rnd := mrand.New(mrand.NewPCG(seed, 7))

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var grants atomic.Int64
	for _, num := range c.nums {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cl *dlm.Client
			defer func() {
				if cl != nil {
					_ = cl.Close()
				}
			}()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if cl == nil || cl.Err() != nil {
					if cl != nil {
						_ = cl.Close()
					}
					var err error
					if cl, err = dlm.New(ctx, dlm.WithSocket(c.nodes[num].socket)); err != nil {
						t.Errorf("node %d: new session: %v", num, err)
						return
					}
				}
				lctx, lcancel := context.WithTimeout(ctx, time.Second)
				l, err := cl.Lock(lctx, ls, resources[i%len(resources)], dlm.EX)
				lcancel()
				switch {
				case err == nil:
					grants.Add(1)
					_ = l.Unlock(ctx)
				case errors.Is(err, dlm.ErrLost), errors.Is(err, context.DeadlineExceeded), errors.Is(err, dlm.ErrCancelled):
					// Lost with a fenced node, given up (and cancelled)
					// while its node was cut off or recovering, or
					// cancelled by dlmd because its master (or directory
					// node) was cut off for longer than the lease.
				default:
					t.Errorf("node %d: lock: %v", num, err)
					return
				}
			}
		}()
	}

	for range 6 {
		a := c.nums[rnd.IntN(len(c.nums))]
		c.net.partition(a)
		if rnd.IntN(3) == 0 {
			b := c.nums[rnd.IntN(len(c.nums))]
			time.Sleep(time.Duration(rnd.IntN(150)) * time.Millisecond)
			c.net.partition(b)
			time.Sleep(time.Duration(rnd.IntN(400)) * time.Millisecond)
			c.net.heal(b)
		}
		time.Sleep(time.Duration(100+rnd.IntN(500)) * time.Millisecond)
		c.net.heal(a)
		time.Sleep(time.Duration(rnd.IntN(300)) * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	fences := 0
	for _, num := range c.nums {
		fences += c.fences(num)
	}
	t.Logf("%d grants during the partitions; %d fences", grants.Load(), fences)

	// Every node serves, and every resource is free (the sessions above
	// are closed): no lock of a gone session was left behind.
	for _, num := range c.nums {
		cl := c.client(ctx, num)
		for _, r := range append([]string{fmt.Sprintf("after%d", num)}, resources...) {
			lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
			l, err := cl.Lock(lctx, ls, r, dlm.EX)
			// A request made while a link is still being dialled again is
			// cancelled once it waited a lease: try again.
			for errors.Is(err, dlm.ErrCancelled) && lctx.Err() == nil {
				l, err = cl.Lock(lctx, ls, r, dlm.EX)
			}
			lcancel()
			if err != nil {
				t.Fatalf("node %d, %s after the heal: %v\nlocks: %s", num, r, err, c.describe(ls))
			}
			if err := l.Unlock(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// describe lists the locks of ls on every master, for failure messages.
func (c *testCluster) describe(ls string) string {
	var b strings.Builder
	for _, li := range c.dump(ls) {
		fmt.Fprintf(&b, "\n  %s on master %d: node %d client %d state %v", li.res, li.master, li.node, li.client, li.state)
	}
	return b.String()
}

// TestGoodbyeKeepsTwoNodesFromFencing: in a two-node cluster, node 2's
// dlmd restarts (for an upgrade: SIGTERM, then a new dlmd) while the node
// stays UP. It says goodbye first, so node 1 recovers without it at once
// instead of losing the majority of its lease (2 of 2) and fencing: node
// 1's client keeps its lock and session, and the new dlmd joins.
func TestGoodbyeKeepsTwoNodesFromFencing(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const ls = "goodbye"
	c1 := c.client(ctx, 1)
	if _, err := c1.Lock(ctx, ls, "kept", dlm.EX); err != nil {
		t.Fatal(err)
	}
	c2 := c.client(ctx, 2)
	if _, err := c2.Lock(ctx, ls, "gone", dlm.EX); err != nil {
		t.Fatal(err)
	}
	c.stop(2, true)
	select {
	case <-c2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("node 2's old session did not end with its dlmd")
	}
	s1 := c.nodes[1].srv
	waitFor(t, 5*time.Second, "node 1 to recover without node 2", func() bool {
		var members []uint32
		_ = s1.call(ctx, func() { members = s1.core.Members() })
		return slices.Equal(members, []uint32{1})
	})
	// The new dlmd takes longer than the lease to come: without the
	// goodbye, node 1 would fence meanwhile.
	end := time.Now().Add(3 * c.o.lease)
	waitFor(t, 5*time.Second, "three times the lease to pass", func() bool { return time.Now().After(end) })
	c.start(2)
	fresh := c.client(ctx, 2)
	waitFor(t, 5*time.Second, "gone to be free for the new dlmd of node 2", func() bool {
		l, err := fresh.Lock(ctx, ls, "gone", dlm.EX, dlm.NoQueue())
		if err != nil {
			return false
		}
		_ = l.Unlock(ctx)
		return true
	})
	if _, err := fresh.Lock(ctx, ls, "kept", dlm.EX, dlm.NoQueue()); !errors.Is(err, dlm.ErrWouldBlock) {
		t.Fatalf("EX NoQueue on node 1's kept from the new dlmd of node 2: %v, want ErrWouldBlock", err)
	}
	select {
	case <-c1.Done():
		t.Fatalf("node 1's session ended: %v", c1.Err())
	default:
	}
	if f := c.fences(1); f != 0 {
		t.Fatalf("node 1 fenced %d times while node 2's dlmd restarted", f)
	}
}
