package server

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/stdiocodec"
	"github.com/openssi/openssi/internal/execwire"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/rpc"
	"github.com/openssi/openssi/internal/rpc/rpctest"
)

// This file runs several vprocd Servers in the test process, each with
// its peer gRPC server (mutual TLS with per-node certificates) on
// loopback and its local API on a Unix socket. The programs they start
// are real processes of this machine.

type testNode struct {
	num    uint32
	srv    *Server
	addr   string
	socket string
	execs  *ExecSocket
}

type testCluster struct {
	t     *testing.T
	ca    *rpctest.CA
	dir   string
	mu    sync.Mutex
	nodes map[uint32]*testNode
}

// source writes a leaf of the given services for node (Consul node
// rpctest.NodeName(node)) and returns a FileSource over it.
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

// startCluster starts n vprocd (nodes 1..n), every node UP.
func startCluster(t *testing.T, n int) *testCluster {
	return startClusterWith(t, n, Config{})
}

// startClusterWith is startCluster with every node's Config based on
// base (Node, Source, Lookup, NodeName and Log are set).
func startClusterWith(t *testing.T, n int, base Config) *testCluster {
	t.Helper()
	dir, err := os.MkdirTemp("", "vprocd-test-")
	if err != nil {
		t.Fatal(err)
	}
	// Traversable by all: the root tests' callers run as another user.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c := &testCluster{t: t, ca: rpctest.NewCA(t, "vprocd test CA"), dir: dir, nodes: map[uint32]*testNode{}}
	log := logrus.New()
	log.SetLevel(logrus.DebugLevel)
	logs := &logBuf{}
	log.SetOutput(logs)
	log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true, TimestampFormat: "15:04:05.000000"})
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("TRACE_LOGS") != "" {
			t.Logf("vprocd logs:\n%s", logs.String())
		}
	})
	for i := 1; i <= n; i++ {
		num := uint32(i)
		src := c.source(num, rpctest.NodeName(num), ServiceName)
		cfg := base
		cfg.Node, cfg.Source = num, src
		cfg.Lookup = func(_ context.Context, m uint32) (string, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			if nd := c.nodes[m]; nd != nil {
				return nd.addr, nil
			}
			return "", fmt.Errorf("no node %d", m)
		}
		cfg.NodeName = func(_ context.Context, m uint32) (string, error) { return rpctest.NodeName(m), nil }
		cfg.Log = log.WithField("node", num)
		srv := New(cfg)
		for j := 1; j <= n; j++ {
			srv.Membership(uint32(j), true)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peers := rpc.NewServer(src, stdiocodec.ServerOptions()...)
		NewPeer(srv).Register(peers)
		go func() { _ = peers.Serve(ln) }()
		socket := filepath.Join(dir, fmt.Sprintf("vprocd%d.sock", num))
		lln, _, err := localapi.Listen(socket, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(socket, 0o666); err != nil {
			t.Fatal(err)
		}
		local := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(localapi.FileCredentials())}, stdiocodec.ServerOptions()...)...)
		api := NewAPI(srv)
		api.Register(local)
		go func() { _ = local.Serve(lln) }()
		// The exec socket too, as vprocd serves it: client/vproc's
		// execs go there (TestExecOverGRPC removes it).
		execSocket := execwire.SocketPath(socket)
		eln, _, err := localapi.Listen(execSocket, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(execSocket, 0o666); err != nil {
			t.Fatal(err)
		}
		execs := ServeExecSocket(api, eln)
		t.Cleanup(func() {
			execs.Stop()
			local.Stop()
			peers.Stop()
			srv.Close()
		})
		c.mu.Lock()
		c.nodes[num] = &testNode{num: num, srv: srv, addr: ln.Addr().String(), socket: socket, execs: execs}
		c.mu.Unlock()
	}
	return c
}

func (c *testCluster) node(n uint32) *testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[n]
}

// client returns a vproc client of node n's socket.
func (c *testCluster) client(n uint32) *vproc.Client {
	c.t.Helper()
	cl, err := vproc.New(context.Background(), vproc.WithSocket(c.node(n).socket))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

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

func readFile(path string) ([]byte, error) { return os.ReadFile(path) }
