package cfsmount

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

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
	close func()
}

// serve exports a fresh directory as the client node "node2" and mounts
// it, for a test as root with /dev/fuse (CI=true fails instead of
// skipping).
func serve(t *testing.T, o Options) *served {
	t.Helper()
	roottest.Need(t)
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("needs /dev/fuse: %v (CI=true makes this a failure, not a skip)", err)
		}
		t.Skipf("needs /dev/fuse: %v (skipped; under CI=true this fails)", err)
	}
	base := t.TempDir()
	// Every user must reach both, for the tests as another user.
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
