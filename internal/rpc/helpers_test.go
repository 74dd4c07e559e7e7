package rpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/openssi/openssi/internal/consultest"
	"github.com/openssi/openssi/internal/rpc/rpctest"
)

// ---- a real Consul agent ----

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// startConsul runs a single dev-mode Consul agent (server, Connect CA on)
// on loopback for the test and returns a client for it once it has a
// leader and CA roots.
func startConsul(t *testing.T) *api.Client {
	t.Helper()
	bin := consultest.Need(t)
	p := freePorts(t, 4)
	logPath := filepath.Join(t.TempDir(), "consul.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "agent", "-dev",
		"-node", fmt.Sprintf("rpc-test-%d", p[0]),
		"-bind", "127.0.0.1", "-client", "127.0.0.1",
		"-http-port", strconv.Itoa(p[0]), "-serf-lan-port", strconv.Itoa(p[1]),
		"-serf-wan-port", strconv.Itoa(p[2]), "-server-port", strconv.Itoa(p[3]),
		"-grpc-port", "-1", "-grpc-tls-port", "-1", "-dns-port", "-1",
		"-log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start consul: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
	})
	cfg := api.DefaultConfig()
	cfg.Address = "127.0.0.1:" + strconv.Itoa(p[0])
	client, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("consul exited early:\n%s", b)
		default:
		}
		leader, err := client.Status().Leader()
		if err == nil && leader != "" {
			roots, _, err := client.Agent().ConnectCARoots(nil)
			if err == nil && len(roots.Roots) > 0 {
				return client
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			t.Fatalf("consul not ready after 60s (last error %v):\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---- certificates made in the test ----

// newTestCA returns a CA for a test (package rpctest).
func newTestCA(t testing.TB, name string) *rpctest.CA { return rpctest.NewCA(t, name) }

func tlsCert(t testing.TB, certPEM, keyPEM []byte) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func svcID(td, svc string) string {
	return "spiffe://" + td + "/ns/default/dc/dc1/svc/" + svc
}

// writeFiles writes a file-source triple into dir and returns its config.
func writeFiles(t *testing.T, dir, name string, certPEM, keyPEM, caPEM []byte) FileConfig {
	t.Helper()
	cfg := FileConfig{
		CertFile: filepath.Join(dir, name+".crt"),
		KeyFile:  filepath.Join(dir, name+".key"),
		CAFile:   filepath.Join(dir, name+"-ca.crt"),
	}
	for f, b := range map[string][]byte{cfg.CertFile: certPEM, cfg.KeyFile: keyPEM, cfg.CAFile: caPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return cfg
}

// ---- a server with the gRPC health service ----

// callLog records what the server saw of each call.
type callLog struct {
	mu    sync.Mutex
	calls []seenCall
}

type seenCall struct {
	peerService string
	deadline    time.Duration // 0 = none
}

func (l *callLog) add(ctx context.Context) {
	svc, _ := PeerService(ctx)
	var d time.Duration
	if dl, ok := ctx.Deadline(); ok {
		d = time.Until(dl)
	}
	l.mu.Lock()
	l.calls = append(l.calls, seenCall{peerService: svc, deadline: d})
	l.mu.Unlock()
}

func (l *callLog) last() seenCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.calls) == 0 {
		return seenCall{}
	}
	return l.calls[len(l.calls)-1]
}

// serve starts an rpc server with src on loopback.
func serve(t *testing.T, src Source) (addr string, log *callLog) {
	t.Helper()
	log = &callLog{}
	srv := NewServer(src,
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			log.add(ctx)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(s any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			log.add(ss.Context())
			return h(s, ss)
		}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return ln.Addr().String(), log
}

// check dials addr with src wanting want and makes one health call. It
// returns the server identity the client saw.
func check(src Source, addr, want string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := Dial(ctx, src, addr, want)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return "", err
	}
	svc, _ := PeerService(peer.NewContext(context.Background(), &p))
	return svc, nil
}

// refusedRaw connects with a hand-made TLS client config and reports
// whether the server refused it: the handshake fails, or the server
// closes the connection instead of sending its HTTP/2 preface.
func refusedRaw(t *testing.T, addr string, cfg *tls.Config) error {
	t.Helper()
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"h2"}
	cfg.InsecureSkipVerify = true
	d := &net.Dialer{Timeout: 3 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err // refused during the handshake
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("server accepted the connection (read %d bytes %q, err %v)", n, bytes.TrimSpace(buf[:n]), err)
	}
	return err
}

func itoa(n int) string { return strconv.Itoa(n) }
