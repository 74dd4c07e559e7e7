package localapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// testServer is a local API server with the gRPC health service behind an
// interceptor that records the caller and optionally applies a check.
type testServer struct {
	path string
	srv  *grpc.Server

	mu      sync.Mutex
	callers []Cred
}

func (s *testServer) seen() []Cred {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Cred(nil), s.callers...)
}

func startServer(t *testing.T, path, group string, check func(context.Context) error) *testServer {
	t.Helper()
	ln, _, err := Listen(path, group)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ts := &testServer{path: path}
	ts.srv = grpc.NewServer(grpc.Creds(Credentials()),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			c, ok := CallerFrom(ctx)
			if !ok {
				return nil, status.Error(codes.Internal, "no caller identity")
			}
			ts.mu.Lock()
			ts.callers = append(ts.callers, c)
			ts.mu.Unlock()
			if check != nil {
				if err := check(ctx); err != nil {
					return nil, err
				}
			}
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(ts.srv, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = ts.srv.Serve(ln) }()
	t.Cleanup(func() { ts.srv.Stop(); <-done })
	return ts
}

func healthCheck(ctx context.Context, path string) error {
	conn, err := Dial(ctx, path)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestCallerIdentity(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "openssi", "test.sock")
	ts := startServer(t, path, "", nil)

	dir, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if got := dir.Mode().Perm(); got != 0o755 {
		t.Errorf("socket dir mode = %v, want 0755", got)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != SocketMode {
		t.Errorf("socket mode = %v, want socket 0660", fi.Mode())
	}

	if err := healthCheck(context.Background(), path); err != nil {
		t.Fatalf("health check: %v", err)
	}
	got := ts.seen()
	want := Cred{PID: int32(os.Getpid()), UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	groups, err := os.Getgroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups {
		want.Groups = append(want.Groups, uint32(g))
	}
	if len(got) != 1 || got[0].String() != want.String() || !slices.Equal(got[0].Groups, want.Groups) {
		t.Fatalf("callers seen = %v, want [%v]", got, want)
	}
}

func TestListenGroup(t *testing.T) {
	own, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		t.Fatalf("look up own group: %v", err)
	}
	tests := []struct {
		name        string
		group       string
		wantGrouped bool
	}{
		{"no group configured", "", false},
		{"missing group", "openssi-no-such-group-x", false},
		{"existing group", own.Name, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "g.sock")
			ln, grouped, err := Listen(path, tt.group)
			if err != nil {
				t.Fatalf("Listen: %v", err)
			}
			defer ln.Close()
			if grouped != tt.wantGrouped {
				t.Errorf("grouped = %v, want %v", grouped, tt.wantGrouped)
			}
			fi, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != SocketMode {
				t.Errorf("mode = %v, want %v", fi.Mode().Perm(), SocketMode)
			}
			if tt.wantGrouped {
				st := fi.Sys().(*syscall.Stat_t)
				if strconv.Itoa(int(st.Gid)) != own.Gid || int(st.Uid) != os.Getuid() {
					t.Errorf("owner = %d:%d, want %d:%s", st.Uid, st.Gid, os.Getuid(), own.Gid)
				}
			}
		})
	}
}

// leaveStale creates a socket file nobody listens on, as a crashed daemon
// leaves behind.
func leaveStale(t *testing.T, path string) {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
}

func TestListenExisting(t *testing.T) {
	t.Run("stale socket is replaced", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "stale.sock")
		leaveStale(t, path)
		startServer(t, path, "", nil)
		if err := healthCheck(context.Background(), path); err != nil {
			t.Fatalf("health check after stale removal: %v", err)
		}
	})
	t.Run("live daemon is not disturbed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "live.sock")
		startServer(t, path, "", nil)
		ln, _, err := Listen(path, "")
		if err == nil {
			ln.Close()
			t.Fatal("Listen on a live socket succeeded")
		}
		if !errors.Is(err, ErrInUse) {
			t.Errorf("err = %v, want ErrInUse", err)
		}
		if want := "localapi: " + path + " is in use by a running daemon"; err.Error() != want {
			t.Errorf("err = %q, want %q", err, want)
		}
		if err := healthCheck(context.Background(), path); err != nil {
			t.Fatalf("live daemon broken by second Listen: %v", err)
		}
	})
	t.Run("regular file is kept", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "file.sock")
		if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
			t.Fatal(err)
		}
		if ln, _, err := Listen(path, ""); err == nil {
			ln.Close()
			t.Fatal("Listen over a regular file succeeded")
		}
		if b, err := os.ReadFile(path); err != nil || string(b) != "data" {
			t.Fatalf("regular file damaged: %q, %v", b, err)
		}
	})
	t.Run("close removes the socket", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "c.sock")
		ln, _, err := Listen(path, "")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("socket still there after Close: %v", err)
		}
	})
}

func TestDialNotRunning(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	leaveStale(t, stale)
	tests := []struct {
		name string
		path string
	}{
		{"missing socket", filepath.Join(dir, "missing.sock")},
		{"stale socket", stale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := Dial(context.Background(), tt.path)
			if err == nil {
				conn.Close()
				t.Fatal("Dial succeeded")
			}
			if !errors.Is(err, ErrNotRunning) || !IsUnavailable(err) {
				t.Errorf("err = %v, want ErrNotRunning and IsUnavailable", err)
			}
		})
	}
}

func TestUnavailableAfterStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stop.sock")
	ts := startServer(t, path, "", nil)
	conn, err := Dial(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	ts.srv.Stop()
	_, err = hc.Check(ctx, &healthpb.HealthCheckRequest{})
	if !IsUnavailable(err) {
		t.Fatalf("call after stop: %v, want unavailable", err)
	}
	if IsUnavailable(nil) || IsUnavailable(status.Error(codes.PermissionDenied, "x")) {
		t.Error("IsUnavailable true for nil or PermissionDenied")
	}
}

func TestRequire(t *testing.T) {
	withCred := func(c Cred) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: AuthInfo{Cred: c}})
	}
	root := withCred(Cred{PID: 1, UID: 0})
	alice := withCred(Cred{PID: 2, UID: 1000})
	bob := withCred(Cred{PID: 3, UID: 1001})
	anon := context.Background()
	tests := []struct {
		name    string
		err     error
		wantMsg string // "" = allowed
	}{
		{"root is root", RequireRoot(root), ""},
		{"user is not root", RequireRoot(alice), "only root may do this (caller is uid 1000, pid 2)"},
		{"unknown is not root", RequireRoot(anon), "caller identity unknown"},
		{"root acts for anyone", RequireUID(root, 1000), ""},
		{"owner acts for self", RequireUID(alice, 1000), ""},
		{"other user denied", RequireUID(bob, 1000), "only root or uid 1000 may do this (caller is uid 1001, pid 3)"},
		{"unknown denied", RequireUID(anon, 1000), "only root or uid 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.wantMsg == "" {
				if tt.err != nil {
					t.Fatalf("denied: %v", tt.err)
				}
				return
			}
			if status.Code(tt.err) != codes.PermissionDenied || !strings.Contains(tt.err.Error(), tt.wantMsg) {
				t.Fatalf("err = %v, want PermissionDenied containing %q", tt.err, tt.wantMsg)
			}
		})
	}
}

func TestHandshakeRejectsTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			time.AfterFunc(5*time.Second, func() { c.Close() })
		}
	}()
	c, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := Credentials().ServerHandshake(c); err == nil || !strings.Contains(err.Error(), "not a Unix socket") {
		t.Fatalf("handshake over TCP: %v, want not a Unix socket", err)
	}
}

const childEnv = "OPENSSI_LOCALAPI_TEST_CHILD_SOCKET"

// TestChildProcess is the body of the unprivileged child that
// TestOtherUserDenied starts; it does nothing in a normal run.
func TestChildProcess(t *testing.T) {
	path := os.Getenv(childEnv)
	if path == "" {
		return
	}
	err := healthCheck(context.Background(), path)
	fmt.Printf("uid=%d code=%s\n", os.Getuid(), status.Code(err))
}

const childDialEnv = "OPENSSI_LOCALAPI_TEST_CHILD_DIAL"

// TestChildDials is the body of the child that TestGroupsFromSocket
// starts: it connects and exits; it does nothing in a normal run.
func TestChildDials(t *testing.T) {
	path := os.Getenv(childDialEnv)
	if path == "" {
		return
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		fmt.Printf("dial: %v\n", err)
		os.Exit(1)
	}
	_ = c.Close()
}

// TestGroupsFromSocket: the caller's supplementary groups are those the
// connecting process had, read from the socket: still right when that
// process is gone before the server accepts (its pid free for reuse, so
// /proc/<pid> can no longer tell).
func TestGroupsFromSocket(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("starting a process as another uid with other groups needs root")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "localapi-groups-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "child.test")
	copyFile(t, self, bin, 0o755)
	path := filepath.Join(dir, "sock", "groups.sock")
	ln, _, err := Listen(path, "")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := os.Chown(path, 0, nobody); err != nil {
		t.Fatal(err)
	}
	groups := []uint32{4242, 4343, 70000}
	cmd := exec.Command(bin, "-test.run=^TestChildDials$", "-test.count=1")
	cmd.Env = append(os.Environ(), childDialEnv+"="+path)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: groups}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	// The child has exited and been reaped: only now accept.
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got, err := peerCred(conn)
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != nobody || got.GID != nobody || got.PID != int32(cmd.Process.Pid) || !slices.Equal(got.Groups, groups) {
		t.Fatalf("caller = %v groups %v, want uid/gid %d pid %d groups %v", got, got.Groups, nobody, cmd.Process.Pid, groups)
	}
}

func TestOtherUserDenied(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("starting a process as another uid needs root")
	}
	const nobody = 65534
	// A directory nobody can reach, holding a copy of this test binary
	// nobody can execute and a socket nobody can connect to.
	dir, err := os.MkdirTemp("", "localapi-uid-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "child.test")
	copyFile(t, self, bin, 0o755)

	path := filepath.Join(dir, "sock", "root.sock")
	ts := startServer(t, path, "", RequireRoot)
	if err := os.Chown(path, 0, nobody); err != nil { // let the child connect
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-test.run=^TestChildProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("uid=%d code=%s", nobody, codes.PermissionDenied); !strings.Contains(string(out), want) {
		t.Fatalf("child output %q, want %q", out, want)
	}
	seen := ts.seen()
	if len(seen) != 1 || seen[0].UID != nobody || seen[0].GID != nobody || seen[0].PID != int32(cmd.Process.Pid) {
		t.Fatalf("server saw %v, want uid/gid %d pid %d", seen, nobody, cmd.Process.Pid)
	}
	// Root, through the same socket, is allowed.
	if err := healthCheck(context.Background(), path); err != nil {
		t.Fatalf("root denied: %v", err)
	}
}

const childListenEnv = "OPENSSI_LOCALAPI_TEST_CHILD_LISTEN"

// TestChildListens is the body of the unprivileged child that
// TestListenUnprivileged starts: it opens a socket for its own group, as
// a daemon running as its own user does; it does nothing in a normal run.
func TestChildListens(t *testing.T) {
	path := os.Getenv(childListenEnv)
	if path == "" {
		return
	}
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		fmt.Printf("look up own group: %v\n", err)
		os.Exit(1)
	}
	ln, grouped, err := Listen(path, g.Name)
	if err != nil {
		fmt.Printf("listen: %v\n", err)
		os.Exit(1)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		fmt.Printf("stat: %v\n", err)
		os.Exit(1)
	}
	st := fi.Sys().(*syscall.Stat_t)
	fmt.Printf("grouped=%v owner=%d:%d mode=%v\n", grouped, st.Uid, st.Gid, fi.Mode().Perm())
}

// TestListenUnprivileged: a daemon that runs as its own user, without any
// capability, can open its socket for the socket group it belongs to (it
// used to chown the socket to root, which only root may do).
func TestListenUnprivileged(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("starting a process as another uid needs root")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "localapi-listen-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "child.test")
	copyFile(t, self, bin, 0o755)
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestChildListens$", "-test.count=1")
	cmd.Env = append(os.Environ(), childListenEnv+"="+filepath.Join(run, "d.sock"))
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("grouped=true owner=%d:%d mode=%v", nobody, nobody, SocketMode); !strings.Contains(string(out), want) {
		t.Fatalf("child output %q, want %q", out, want)
	}
}

func copyFile(t *testing.T, src, dst string, mode fs.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestDialSocketPicksTheSocket(t *testing.T) {
	const env = "OPENSSI_TEST_DIALSOCKET"
	dir := t.TempDir()
	set, fromEnv, def := filepath.Join(dir, "set.sock"), filepath.Join(dir, "env.sock"), filepath.Join(dir, "def.sock")
	tests := []struct {
		name, set, env, want string
	}{
		{"option wins", set, fromEnv, set},
		{"environment over the default", "", fromEnv, fromEnv},
		{"default", "", "", def},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(env, tt.env)
			conn, got, err := DialSocket(context.Background(), tt.set, env, def)
			if err == nil {
				conn.Close()
				t.Fatal("DialSocket succeeded with no daemon")
			}
			if got != tt.want || !errors.Is(err, ErrNotRunning) {
				t.Fatalf("dialled %s (%v), want %s and ErrNotRunning", got, err, tt.want)
			}
		})
	}
}
