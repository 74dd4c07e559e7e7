package cfsmount

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/openssi/openssi/daemons/cfsd/export"
	"github.com/openssi/openssi/daemons/cfsd/handle"
	"github.com/openssi/openssi/internal/roottest"
	pb "github.com/openssi/openssi/proto/cfspeer/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// served is an export served over gRPC on a Unix socket and mounted.
type served struct {
	dir   string // the exported directory
	mnt   string // the mount
	exp   *export.Export
	conn  *grpc.ClientConn
	fuse  *fuse.Server
	close func()
}

// serve exports a fresh directory as the client node "node2" and mounts
// it, for a test as root with /dev/fuse (CI=true fails instead of
// skipping).
func serve(t *testing.T, o Options) *served {
	t.Helper()
	roottest.NeedFUSE(t)
	// Every user must reach both, for the tests as another user: not
	// under t.TempDir, whose parent is root's 0700.
	base, err := os.MkdirTemp("", "cfsmount-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &served{dir: filepath.Join(base, "export"), mnt: filepath.Join(base, "mnt")}
	for _, d := range []string{s.dir, s.mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	exp, err := export.Open("home", s.dir, bytes.Repeat([]byte{7}, handle.KeySize), export.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	s.exp = exp
	svc := export.NewService(func(context.Context) (string, error) { return "node2", nil })
	svc.Add(exp)
	sock := filepath.Join(base, "cfs.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(4 << 20))
	pb.RegisterCfsPeerServer(gs, svc)
	go gs.Serve(lis)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s.conn = conn
	o.Export, o.Client = "home", pb.NewCfsPeerClient(conn)
	if o.OnError == nil {
		o.OnError = func(err error) { t.Logf("mount: %v", err) }
	}
	srv, err := Mount(s.mnt, o)
	if err != nil {
		t.Fatal(err)
	}
	s.fuse = srv
	s.close = func() {
		if err := srv.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
		srv.Wait()
		conn.Close()
		gs.Stop()
		exp.Close()
	}
	t.Cleanup(func() { s.close() })
	return s
}

func TestMountBasics(t *testing.T) {
	s := serve(t, Options{Timeout: 5 * time.Second})
	p := filepath.Join(s.mnt, "a.txt")
	if err := os.WriteFile(p, []byte("hello"), 0o640); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(s.dir, "a.txt"))
	if err != nil || string(got) != "hello" {
		t.Fatalf("the server has %q, %v", got, err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o640 || st.Size() != 5 {
		t.Fatalf("stat: %v %v", st, err)
	}
	entries, err := os.ReadDir(s.mnt)
	if err != nil || len(entries) != 1 || entries[0].Name() != "a.txt" {
		t.Fatalf("readdir: %v %v", entries, err)
	}
}

// TestLargeDirectory: a directory larger than a page of the protocol's
// listing is listed whole, each name once.
func TestLargeDirectory(t *testing.T) {
	s := serve(t, Options{Timeout: 10 * time.Second})
	const n = 10000 // pages of 4096 entries
	for i := 0; i < n; i++ {
		if err := os.WriteFile(filepath.Join(s.dir, fmt.Sprintf("file-%05d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(s.mnt)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.Name()] {
			t.Fatalf("%s listed twice", e.Name())
		}
		seen[e.Name()] = true
	}
	if len(seen) != n {
		t.Fatalf("%d names listed, want %d", len(seen), n)
	}
}

// TestTimesBefore1970: a time before the epoch reads back as the server
// keeps it.
func TestTimesBefore1970(t *testing.T) {
	s := serve(t, Options{Timeout: 10 * time.Second})
	p := filepath.Join(s.dir, "old")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	when := time.Unix(-2, -500_000_000) // -2.5 s
	if err := os.Chtimes(p, when, when); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(s.mnt, "old"))
	if err != nil {
		t.Fatal(err)
	}
	if !st.ModTime().Equal(when) {
		t.Errorf("mtime %v through the mount, want %v", st.ModTime().UnixNano(), when.UnixNano())
	}
}

// TestACLs: a POSIX ACL that grants a user more than the mode bits is
// honoured through the mount, as on the server.
func TestACLs(t *testing.T) {
	roottest.Need(t, "setfacl")
	s := serve(t, Options{Timeout: 10 * time.Second})
	p := filepath.Join(s.dir, "acl")
	if err := os.WriteFile(p, []byte("granted"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("setfacl", "-m", "u:nobody:r", p).CombinedOutput(); err != nil {
		t.Skipf("setfacl: %v: %s (no ACLs on this file system)", err, out)
	}
	cmd := exec.Command("cat", filepath.Join(s.mnt, "acl"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "granted" {
		t.Errorf("nobody reads the file its ACL grants it: %v: %s", err, out)
	}
}
