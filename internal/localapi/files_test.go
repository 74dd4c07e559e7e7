package localapi

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// startFileServer serves the health service with FileCredentials; each
// call's file queue is sent on calls.
func startFileServer(t *testing.T) (string, <-chan *Files) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "files.sock")
	ln, _, err := Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	calls := make(chan *Files, 8)
	srv := grpc.NewServer(grpc.Creds(FileCredentials()), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			calls <- FilesFrom(ctx)
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return path, calls
}

// TestPassFiles passes a pipe's write end with a call: the server's
// handler takes it from the call's connection and writes to it.
func TestPassFiles(t *testing.T) {
	path, calls := startFileServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, p, err := DialPassing(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	// A first call connects; then the files ride on the next one.
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if q := <-calls; q == nil || q.Take() != nil {
		t.Fatalf("before any file passed: queue %v, want an empty one", q)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := p.Pass([]*os.File{w}); err != nil {
		t.Fatal(err)
	}
	if err := p.Pass([]*os.File{w}); err == nil {
		t.Error("a second Pass before the first was sent: no error")
	}
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	w.Close() // the server has its own copy
	set := (<-calls).Take()
	if len(set) != 1 {
		t.Fatalf("got %d files, want 1", len(set))
	}
	if _, err := set[0].WriteString("through the daemon"); err != nil {
		t.Fatal(err)
	}
	set[0].Close()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "through the daemon" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// TestPassTooManyFiles: a set of more than MaxFiles closes the
// connection, and the server holds none of them.
func TestPassTooManyFiles(t *testing.T) {
	path, _ := startFileServer(t)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fds := make([]int, MaxFiles+1)
	for i := range fds {
		fds[i] = int(w.Fd())
	}
	if _, _, err := c.(*net.UnixConn).WriteMsgUnix([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), unix.UnixRights(fds...), nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(c); err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("the connection: %v, want it closed", err)
	}
	// Every copy of the write end closed: the pipe reads EOF.
	_ = r.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := r.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("the pipe: %d, %v; want EOF (the server kept a copy)", n, err)
	}
}

func TestPassLimits(t *testing.T) {
	var p Passer
	if err := p.Pass(nil); err == nil {
		t.Error("no files: no error")
	}
	if err := p.Pass(make([]*os.File, MaxFiles+1)); err == nil {
		t.Error("too many files: no error")
	}
	if err := p.Pass([]*os.File{os.Stdin}); err == nil {
		t.Error("not connected: no error")
	}
	var q *Files
	if q.Take() != nil {
		t.Error("a nil queue gave files")
	}
	if FilesFrom(peer.NewContext(context.Background(), &peer.Peer{AuthInfo: AuthInfo{}})) != nil {
		t.Error("a connection without FileCredentials has a queue")
	}
}

func TestParseRights(t *testing.T) {
	for _, tc := range []struct {
		name string
		oob  []byte
		want []int
		bad  string
	}{
		{"none", nil, nil, ""},
		{"one set", unix.UnixRights(5, 6), []int{5, 6}, ""},
		{"two messages", append(unix.UnixRights(5), unix.UnixRights(7)...), []int{5, 7}, ""},
		{"credentials", unix.UnixCredentials(&unix.Ucred{Pid: 1}), nil, "not SCM_RIGHTS"},
		{"rights then credentials", append(unix.UnixRights(9), unix.UnixCredentials(&unix.Ucred{Pid: 1})...), []int{9}, "not SCM_RIGHTS"},
		{"cut short of a header", unix.UnixRights(5)[:10], nil, ""},
		{"a header longer than the data", unix.UnixRights(5)[:18], nil, "ancillary data"},
	} {
		got, err := ParseRights(tc.oob)
		if tc.bad == "" && err != nil || tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.bad)
		}
		if len(got) != len(tc.want) || (len(got) > 0 && !equalInts(got, tc.want)) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func equalInts(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzParseRights: any ancillary data parses or fails, never panics, and
// never yields more descriptors than it has room for.
func FuzzParseRights(f *testing.F) {
	f.Add(unix.UnixRights(3, 4, 5))
	f.Add(unix.UnixCredentials(&unix.Ucred{Pid: 1, Uid: 2, Gid: 3}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, oob []byte) {
		fds, _ := ParseRights(oob)
		if len(fds)*4 > len(oob) {
			t.Fatalf("%d descriptors from %d bytes", len(fds), len(oob))
		}
	})
}
