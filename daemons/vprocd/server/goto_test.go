package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/procfs"
	"github.com/openssi/openssi/internal/roottest"
)

// TestGoto moves the cooperative counter by writing its goto: through
// node 1's provider (as the FUSE write does) 2 -> 3, refused for another
// uid, a node that is not up and a cpid that is not there; then, when
// /dev/fuse is there, through node 1's mounted /cluster/proc with bash's
// echo, 3 -> 2 as root and refused to uid 65534. The client reads one
// counter all along.
func TestGoto(t *testing.T) {
	bin := buildCounter(t)
	c := startClusterWith(t, 3, Config{CoopDir: t.TempDir()})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, out, outW := execCounter(ctx, t, c, 2, bin)
	out.upTo(10)
	x := cpid.CPID(p.Cpid)
	procs := c.node(1).srv.Procs()

	for _, tc := range []struct {
		name      string
		x         cpid.CPID
		uid, node uint32
		want      error
	}{
		{"another uid", x, 4242, 3, procfs.ErrNotOwner},
		{"a node not up", x, 0, 9, procfs.ErrCannotMove},
		{"not a node", x, 0, 0, procfs.ErrCannotMove},
		{"no such process", cpid.MustMake(2, cpid.MaxPID), 0, 3, procfs.ErrNotFound},
	} {
		err := procs.Goto(ctx, tc.x, tc.uid, tc.node)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		t.Logf("%s: %v", tc.name, err)
		if n, _ := runsOn(c, p.Cpid); n != 2 {
			t.Fatalf("%s: after the refusal it runs on node %d", tc.name, n)
		}
	}
	if err := procs.Goto(ctx, x, 0, 3); err != nil {
		t.Fatalf("goto 3: %v", err)
	}
	if n := settledOn(c, p.Cpid, 3); n != 3 {
		t.Fatalf("after goto 3 it runs on node %d", n)
	}
	out.upTo(out.last + 10)

	if _, err := os.Stat("/dev/fuse"); err == nil && os.Geteuid() == 0 {
		roottest.Need(t, "bash")
		dir := filepath.Join(c.dir, "cluster", "proc") // c.dir is 0755
		m, err := c.node(1).srv.MountProcs(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := m.Unmount(); err != nil {
				t.Errorf("unmount: %v", err)
			}
		}()
		file := filepath.Join(dir, strconv.FormatInt(p.Cpid, 10), "goto")
		if out, err := asUser(65534, "bash", "-c", "echo 2 > "+file); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("nobody: echo 2 > goto: %q, %v; want Permission denied", out, err)
		}
		if out, err := asUser(0, "bash", "-c", "echo 2 > "+file); err != nil {
			t.Fatalf("root: echo 2 > goto: %v\n%s", err, out)
		}
		if n := settledOn(c, p.Cpid, 2); n != 2 {
			t.Fatalf("after echo 2 > goto it runs on node %d", n)
		}
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "node")); err != nil || string(b) != "2\n" {
			t.Errorf("node after goto: %q, %v", b, err)
		}
		if out, err := asUser(0, "bash", "-c", "echo 2 > "+file); err == nil || !strings.Contains(out, "Invalid argument") {
			t.Errorf("root: echo 2 > goto where it runs: %q, %v; want Invalid argument", out, err)
		}
		out.upTo(out.last + 10)
	} else {
		t.Log("no /dev/fuse or not root: goto through the mount not tried")
	}

	exitCounter(t, p, out, outW, 4)
}

// TestGotoErr checks the status codes of a move's refusals become the
// errors procfs turns into errnos.
func TestGotoErr(t *testing.T) {
	for _, tt := range []struct {
		code codes.Code
		want error
	}{
		{codes.PermissionDenied, procfs.ErrNotOwner},
		{codes.NotFound, procfs.ErrNotFound},
		{codes.InvalidArgument, procfs.ErrCannotMove},
		{codes.FailedPrecondition, procfs.ErrCannotMove},
		{codes.Unavailable, procfs.ErrBusy},
		{codes.ResourceExhausted, procfs.ErrBusy},
		{codes.Canceled, context.Canceled},
		{codes.Aborted, nil},
		{codes.Internal, nil},
	} {
		err := gotoErr(status.Error(tt.code, "vproc: why"))
		if err == nil || !strings.Contains(err.Error(), "vproc: why") {
			t.Errorf("%v: %v, want the reason", tt.code, err)
		}
		for _, kind := range []error{procfs.ErrNotOwner, procfs.ErrNotFound, procfs.ErrCannotMove, procfs.ErrBusy, context.Canceled} {
			if errors.Is(err, kind) != (kind == tt.want) {
				t.Errorf("%v: %v; is %v: %v", tt.code, err, kind, errors.Is(err, kind))
			}
		}
	}
	if gotoErr(nil) != nil {
		t.Error("gotoErr(nil) != nil")
	}
}

// settledOn waits a moment for x to run on node to only (the answer of a
// move comes at its commit: the old copy ends a moment later) and
// returns where it runs.
func settledOn(c *testCluster, x int64, to uint32) uint32 {
	n, _ := runsOn(c, x)
	for end := time.Now().Add(5 * time.Second); n != to && time.Now().Before(end); n, _ = runsOn(c, x) {
		time.Sleep(5 * time.Millisecond)
	}
	return n
}
