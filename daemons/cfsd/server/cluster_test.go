package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/daemons/cfsd/cfsdspec"
	"github.com/openssi/openssi/daemons/cfsd/server"
	"github.com/openssi/openssi/internal/roottest"
	"github.com/openssi/openssi/internal/rpc"
	"github.com/openssi/openssi/internal/rpc/rpctest"
	pb "github.com/openssi/openssi/proto/cfspeer/v1"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// testCluster runs cfsd Servers of nodes in one process over real TLS;
// node 1 serves the export "home", and every node mounts it at a mount
// point of its own (as if each were its node's /cluster/home).
type testCluster struct {
	t      *testing.T
	ca     *rpctest.CA
	dir    string
	export string // node 1's exported directory

	mu    sync.Mutex
	nodes map[uint32]*testNode
}

type testNode struct {
	srv    *server.Server
	addr   string
	mnt    string
	peers  *grpc.Server
	cancel context.CancelFunc
	done   chan struct{}
}

func newCluster(t *testing.T) *testCluster {
	t.Helper()
	roottest.NeedFUSE(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	c := &testCluster{t: t, ca: rpctest.NewCA(t, "cfsd test CA"), dir: dir, export: filepath.Join(dir, "export"), nodes: map[uint32]*testNode{}}
	if err := os.Mkdir(c.export, 0o755); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *testCluster) source(name string, services ...string) rpc.Source {
	t := c.t
	certPEM, keyPEM := c.ca.IssueNode(t, name, services...)
	cfg := rpc.FileConfig{
		CertFile: filepath.Join(c.dir, name+strings.Join(services, "")+".crt"),
		KeyFile:  filepath.Join(c.dir, name+strings.Join(services, "")+".key"),
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

// start starts node n's cfsd, which mounts "home" on a directory of its
// own, and returns once it is serving (not yet mounted).
func (c *testCluster) start(n uint32, timeout time.Duration) (*testNode, error) {
	t := c.t
	t.Helper()
	name := rpctest.NodeName(n)
	src := c.source(name, server.ServiceName)
	mnt := filepath.Join(c.dir, "mnt"+strconv.Itoa(int(n)))
	log := logrus.New()
	log.SetOutput(testWriter{t})
	srv, err := server.New(server.Config{
		Self:    n,
		Exports: []cfsdspec.Export{{Name: "home", Path: c.export, Mount: mnt, Server: 1}},
		Timeout: timeout,
		KeyDir:  filepath.Join(c.dir, "keys"+strconv.Itoa(int(n))),
		Source:  src,
		Lookup: func(_ context.Context, m uint32) (string, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			if nd := c.nodes[m]; nd != nil && nd.addr != "" {
				return nd.addr, nil
			}
			return "", fmt.Errorf("node %d has no cfsd", m)
		},
		NodeName: func(_ context.Context, m uint32) (string, error) { return rpctest.NodeName(m), nil },
		Log:      log.WithField("node", n),
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peers := rpc.NewServer(src, server.ServerOptions()...)
	srv.Register(peers)
	go func() { _ = peers.Serve(ln) }()
	ctx, cancel := context.WithCancel(context.Background())
	nd := &testNode{srv: srv, addr: ln.Addr().String(), mnt: mnt, peers: peers, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(nd.done)
		_ = srv.Run(ctx, func() {})
	}()
	c.mu.Lock()
	c.nodes[n] = nd
	c.mu.Unlock()
	t.Cleanup(func() { c.stop(n) })
	return nd, nil
}

// stop ends node n's cfsd (its mounts unmounted), as its drain does.
func (c *testCluster) stop(n uint32) {
	c.mu.Lock()
	nd := c.nodes[n]
	delete(c.nodes, n)
	c.mu.Unlock()
	if nd == nil {
		return
	}
	nd.cancel()
	<-nd.done
	nd.srv.Close()
	nd.peers.Stop()
}

// mounted waits until node n's mount answers (the loop mounts once a
// second), at most 10 s.
func (c *testCluster) mounted(n uint32) string {
	c.t.Helper()
	nd := c.nodes[n]
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(nd.srv.Status(), "mounted 1 of 1") {
		if time.Now().After(deadline) {
			c.t.Fatalf("node %d: not mounted after 10 s: %s", n, nd.srv.Status())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nd.mnt
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestTwoNodes: a file written and closed through node 1's mount is read
// through node 2's, and the other way round, over mutual TLS; node 2,
// started before node 1 serves, mounts once it does.
func TestTwoNodes(t *testing.T) {
	c := newCluster(t)
	if _, err := c.start(2, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if s := c.nodes[2].srv.Status(); !strings.Contains(s, "waiting for the server of home") {
		t.Errorf("node 2 before node 1 serves: %q", s)
	}
	if _, err := c.start(1, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	m1, m2 := c.mounted(1), c.mounted(2)

	if err := os.WriteFile(filepath.Join(m1, "from1"), []byte("written on node 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(m2, "from1")); err != nil || string(b) != "written on node 1" {
		t.Fatalf("node 2 reads %q, %v", b, err)
	}
	// Node 2 overwrites it; node 1's next open reads the new data
	// (close-to-open), not what its page cache held.
	if err := os.WriteFile(filepath.Join(m2, "from1"), []byte("rewritten on node 2"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(m1, "from1")); err != nil || string(b) != "rewritten on node 2" {
		t.Fatalf("node 1 reads %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(c.export, "from1")); err != nil || string(b) != "rewritten on node 2" {
		t.Fatalf("the export holds %q, %v", b, err)
	}
}

// TestOnlyPeerCfsdMayCall: the file protocol answers a peer cfsd only;
// another daemon's certificate (dlmd's of node 2) is refused.
func TestOnlyPeerCfsdMayCall(t *testing.T) {
	c := newCluster(t)
	n1, err := c.start(1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		service string
		want    codes.Code
	}{
		{rpc.ServiceName("dlmd"), codes.PermissionDenied},
		{server.ServiceName, codes.OK},
	} {
		src := c.source(rpctest.NodeName(2), tc.service)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := rpc.Dial(ctx, src, n1.addr, rpc.NodeIdentity(server.ServiceName, rpctest.NodeName(1)))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		_, err = pb.NewCfsPeerClient(conn).Root(ctx, &pb.RootRequest{Export: "home", Caller: &pb.Caller{}})
		cancel()
		conn.Close()
		if status.Code(err) != tc.want {
			t.Errorf("%s: Root = %v, want %v", tc.service, err, tc.want)
		}
	}
}

// TestNodeDownClosesItsFiles: the files a node had open on the server
// are closed when it goes DOWN, and its mount answers with errors, not a
// hang, when the server is gone.
func TestNodeDownClosesItsFiles(t *testing.T) {
	c := newCluster(t)
	if _, err := c.start(1, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c.start(2, time.Second); err != nil {
		t.Fatal(err)
	}
	m2 := c.mounted(2)
	f, err := os.Create(filepath.Join(m2, "open"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("before")); err != nil {
		t.Fatal(err)
	}
	c.nodes[1].srv.NodeDown(rpctest.NodeName(2))
	if _, err := f.Write([]byte("after")); !errors.Is(err, syscall.EBADF) {
		t.Errorf("a write to a file closed by the node's NODEDOWN: %v, want EBADF", err)
	}

	// The server stops: node 2's operations fail within the timeout.
	c.stop(1)
	start := time.Now()
	_, err = os.Stat(filepath.Join(m2, "open"))
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("stat with the server gone: %v, want EIO", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stat with the server gone took %v (timeout 1 s)", d)
	}
}

// TestMissingExport: a node that serves an export whose directory does
// not exist refuses to start, with one line naming it.
func TestMissingExport(t *testing.T) {
	c := newCluster(t)
	if err := os.Remove(c.export); err != nil {
		t.Fatal(err)
	}
	_, err := c.start(1, time.Second)
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "export home: "+c.export+" is not a directory on this node") {
		t.Fatalf("start = %v, want one line naming the export and its path", err)
	}
	// Its key survives a restart: the same handles after one.
	if err := os.Mkdir(c.export, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := c.start(1, time.Second); err != nil {
		t.Fatal(err)
	}
	key1, _ := os.ReadFile(filepath.Join(c.dir, "keys1", "home.key"))
	c.stop(1)
	if _, err := c.start(1, time.Second); err != nil {
		t.Fatal(err)
	}
	key2, _ := os.ReadFile(filepath.Join(c.dir, "keys1", "home.key"))
	if len(key1) != 32 || !bytes.Equal(key1, key2) {
		t.Errorf("the export's key changed across a restart (%x, %x)", key1, key2)
	}
}
