package server

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
	"github.com/openssi/openssi/internal/roottest"
	"github.com/openssi/openssi/internal/rpc"
	"github.com/openssi/openssi/internal/rpc/rpctest"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// Every node of these clusters reads this machine's /proc: each sees the
// same processes under the cpids of its own number, so a process started
// on node 2 is listed by node 2 as node 2's, with the cpid exec returned.

// sleeper starts `sleep 1000 MARKER`-like program on node to from node
// from, with env, and kills it at the end of the test.
func sleeper(t *testing.T, c *testCluster, from, to uint32, env ...string) (*vproc.Process, string) {
	t.Helper()
	marker := "ps-test-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := c.client(from).Exec(ctx, int(to), vproc.Cmd{Args: []string{"sh", "-c", "exec sleep 1000", marker}, Env: append([]string{"PATH=/usr/bin:/bin"}, env...)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Directly as well as through vprocd: a SIGKILL that vprocd did
		// not deliver left the sleep running for 1000 s, reparented to
		// init with the test's descriptors (CI saw three).
		_ = syscall.Kill(p.Pid, syscall.SIGKILL)
		_ = p.Signal(syscall.SIGKILL)
		cancel()
		_, _ = p.Wait()
	})
	// sh has exec'd sleep once its argv says so.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/cmdline")
		if strings.HasPrefix(string(b), "sleep\x00") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d's cmdline is %q, want sleep's", p.Pid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return p, marker
}

func ps(t *testing.T, c *testCluster, from uint32, f vproc.PsFilter) *vproc.Table {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tab, err := c.client(from).Ps(ctx, f)
	if err != nil {
		t.Fatalf("ps on node %d: %v", from, err)
	}
	return tab
}

func nodesOf(tab *vproc.Table) []uint32 {
	var ns []uint32
	for _, n := range tab.Nodes {
		ns = append(ns, n.Node)
	}
	return ns
}

// TestPsListsRemoteProcess: ps on node 1 lists a process started on
// node 2 with the cpid exec gave, its node, owner and command line, and
// every node answers.
func TestPsListsRemoteProcess(t *testing.T) {
	c := startCluster(t, 3)
	p, _ := sleeper(t, c, 1, 2)
	want := cpid.CPID(p.Cpid)
	tab := ps(t, c, 1, vproc.PsFilter{})
	if got := nodesOf(tab); !slices.Equal(got, []uint32{1, 2, 3}) || len(tab.Failures) != 0 {
		t.Fatalf("tables of nodes %v, failures %+v; want 1 2 3 and none", got, tab.Failures)
	}
	rows := tab.Rows()
	i := slices.IndexFunc(rows, func(r proctable.Row) bool { return r.CPID == want })
	if i < 0 {
		t.Fatalf("ps on node 1 lacks cpid %d (node 2 pid %d) among %d rows", want, p.Pid, len(rows))
	}
	r := rows[i]
	if r.Node != 2 || r.PID != int32(p.Pid) || r.UID != uint32(os.Geteuid()) || !slices.Equal(r.Args, []string{"sleep", "1000"}) || r.Stat == "" || r.Start.IsZero() {
		t.Errorf("row %+v", r)
	}
	if r.PPID == 0 || r.PPID.Node() != 2 {
		t.Errorf("parent %d, want a cpid of node 2", r.PPID)
	}
	for _, n := range tab.Nodes {
		if n.Uptime <= 0 || n.Boot.IsZero() || n.Load == nil || n.Load.CPUs == 0 {
			t.Errorf("node %d: uptime %v boot %v load %+v", n.Node, n.Uptime, n.Boot, n.Load)
		}
		for _, r := range n.Rows {
			// Every row is of the node that read it, named by that node
			// but for the program exec started there, named by its
			// origin's cpid.
			if r.Node != n.Node || (r.CPID.Node() != n.Node && r.CPID != want) {
				t.Fatalf("node %d's table has %+v", n.Node, r)
			}
		}
	}
}

// TestPsFilters: the node, user and cpid filters, alone and together.
func TestPsFilters(t *testing.T) {
	c := startCluster(t, 3)
	p, _ := sleeper(t, c, 1, 2)
	want := cpid.CPID(p.Cpid)
	me := uint32(os.Geteuid())
	for _, tc := range []struct {
		name  string
		f     proctable.Filter
		nodes []uint32
		has   bool
		only  func(proctable.Row) bool
	}{
		{"by cpid", proctable.Filter{CPIDs: []cpid.CPID{want}}, []uint32{1, 2, 3}, true,
			func(r proctable.Row) bool { return r.CPID == want }},
		{"by node and user", proctable.Filter{Nodes: []uint32{2}, UIDs: []uint32{me}}, []uint32{2}, true,
			func(r proctable.Row) bool { return r.Node == 2 && r.UID == me }},
		{"another node", proctable.Filter{Nodes: []uint32{3}, CPIDs: []cpid.CPID{want}}, []uint32{3}, false, nil},
		{"another user", proctable.Filter{UIDs: []uint32{me + 4242}, CPIDs: []cpid.CPID{want}}, []uint32{1, 2, 3}, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := ps(t, c, 1, vproc.PsFilter{Filter: tc.f})
			if got := nodesOf(tab); !slices.Equal(got, tc.nodes) || len(tab.Failures) != 0 {
				t.Fatalf("nodes %v failures %+v, want %v", got, tab.Failures, tc.nodes)
			}
			rows := tab.Rows()
			if has := slices.ContainsFunc(rows, func(r proctable.Row) bool { return r.CPID == want }); has != tc.has {
				t.Errorf("lists cpid %d: %v, want %v (%d rows)", want, has, tc.has, len(rows))
			}
			if tc.only != nil {
				for _, r := range rows {
					if !tc.only(r) {
						t.Errorf("row not selected by the filter: %+v", r)
					}
				}
			}
			if !tc.has && len(rows) != 0 {
				t.Errorf("%d rows, want none", len(rows))
			}
		})
	}
}

// TestPsDownNode: a DOWN node is not asked (and not reported) unless
// named; named, it is reported as DOWN.
func TestPsDownNode(t *testing.T) {
	c := startCluster(t, 3)
	c.node(1).srv.Membership(3, false)
	tab := ps(t, c, 1, vproc.PsFilter{})
	if got := nodesOf(tab); !slices.Equal(got, []uint32{1, 2}) || len(tab.Failures) != 0 {
		t.Fatalf("nodes %v failures %+v, want 1 2 and none", got, tab.Failures)
	}
	for _, r := range tab.Rows() {
		if r.Node == 3 {
			t.Fatalf("a row of the DOWN node: %+v", r)
		}
	}
	tab = ps(t, c, 1, vproc.PsFilter{Filter: proctable.Filter{Nodes: []uint32{3, 2, 7}}})
	if got := nodesOf(tab); !slices.Equal(got, []uint32{2}) {
		t.Errorf("nodes %v, want 2", got)
	}
	want := []vproc.NodeFailure{
		{Node: 3, Reason: "vproc: node 3 is DOWN"},
		{Node: 7, Reason: "vproc: node 7 is not a member of the cluster"},
	}
	if !slices.Equal(tab.Failures, want) {
		t.Errorf("failures %+v, want %+v", tab.Failures, want)
	}
}

// blockingFS is a /proc whose reads wait until release is closed.
type blockingFS struct {
	fs.FS
	release chan struct{}
}

func (b blockingFS) Open(name string) (fs.File, error) {
	<-b.release
	return b.FS.Open(name)
}

// TestPsSlowNode: a node that does not answer within the timeout is
// reported in one line as timed out, and the others are still listed.
func TestPsSlowNode(t *testing.T) {
	c := startCluster(t, 3)
	slow := blockingFS{FS: os.DirFS("/proc"), release: make(chan struct{})}
	t.Cleanup(func() { close(slow.release) })
	s3 := c.node(3).srv
	s3.mu.Lock()
	s3.cfg.Proc = slow
	s3.mu.Unlock()

	began := time.Now()
	tab := ps(t, c, 1, vproc.PsFilter{Timeout: 300 * time.Millisecond})
	took := time.Since(began)
	if got := nodesOf(tab); !slices.Equal(got, []uint32{1, 2}) {
		t.Errorf("nodes %v, want 1 2", got)
	}
	want := []vproc.NodeFailure{{Node: 3, Reason: "vproc: node 3 did not answer within 300ms", Timeout: true}}
	if !slices.Equal(tab.Failures, want) {
		t.Errorf("failures %+v, want %+v", tab.Failures, want)
	}
	if took > 10*time.Second {
		t.Errorf("ps took %v with a 300ms timeout", took)
	}
	if len(tab.Rows()) == 0 {
		t.Error("no rows from the nodes that answered")
	}
}

// dialPeer dials node to's vprocd as the vprocd of node from.
func dialPeer(t *testing.T, c *testCluster, from, to uint32) vprocpeerv1.ProcTablePeerClient {
	t.Helper()
	src := c.source(from, rpctest.NodeName(from), ServiceName)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := rpc.Dial(ctx, src, c.node(to).addr, rpc.NodeIdentity(ServiceName, rpctest.NodeName(to)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return vprocpeerv1.NewProcTablePeerClient(conn)
}

// TestPeerFilesEnviron: a node returns a process's environment to a
// peer only for a reader who may read it (root or the owner), whatever
// the peer asks; and only to a vprocd of the node it claims to be.
func TestPeerFilesEnviron(t *testing.T) {
	c := startCluster(t, 2)
	p, _ := sleeper(t, c, 1, 2, "SECRET=hunter2")
	owner := uint32(os.Geteuid())
	other := owner + 4242
	peer := dialPeer(t, c, 1, 2)
	ctx := context.Background()
	for _, tc := range []struct {
		reader uint32
		want   bool
		env    bool
	}{{owner, true, true}, {0, true, true}, {other, true, false}, {owner, false, false}} {
		r, err := peer.Files(ctx, &vprocpeerv1.FilesRequest{Origin: 1, Cpid: int32(p.Cpid), ReaderUid: tc.reader, WantEnviron: tc.want})
		if err != nil {
			t.Fatalf("Files as %d: %v", tc.reader, err)
		}
		if got := strings.Contains(string(r.Environ), "SECRET=hunter2"); got != tc.env || (!tc.env && len(r.Environ) != 0) {
			t.Errorf("reader %d want_environ %v: environ %q", tc.reader, tc.want, r.Environ)
		}
		if !strings.HasPrefix(string(r.Cmdline), "sleep\x00") || !strings.Contains(string(r.Status), "State:") || r.Proc.GetCpid() != int32(p.Cpid) {
			t.Errorf("reader %d: cmdline %q status %.40q proc %v", tc.reader, r.Cmdline, r.Status, r.Proc)
		}
	}
	if _, err := peer.Files(ctx, &vprocpeerv1.FilesRequest{Origin: 2, Cpid: int32(p.Cpid), ReaderUid: 0, WantEnviron: true}); err == nil {
		t.Error("node 1's vprocd claiming node 2 got the files")
	}
	if _, err := peer.Snapshot(ctx, &vprocpeerv1.SnapshotRequest{Origin: 3}); err == nil {
		t.Error("node 1's vprocd claiming node 3 got the table")
	}
	// A cpid of another node, or of no process, is not found.
	for _, cp := range []cpid.CPID{cpid.MustMake(1, int32(p.Pid)), cpid.MustMake(2, cpid.MaxPID), 0} {
		if _, err := peer.Files(ctx, &vprocpeerv1.FilesRequest{Origin: 1, Cpid: int32(cp)}); err == nil || !strings.Contains(err.Error(), "no process") {
			t.Errorf("Files(%d): %v, want no process", cp, err)
		}
	}
}

// TestProcMountCluster mounts node 1's /cluster/proc and reads a process
// of node 2 through it with standard tools: listed, its status, node and
// command line for anyone, its environment for root and not for another
// user.
func TestProcMountCluster(t *testing.T) {
	roottest.Need(t, "ls", "cat")
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("needs /dev/fuse: %v", err)
		}
		t.Skipf("needs /dev/fuse: %v", err)
	}
	c := startCluster(t, 2)
	p, _ := sleeper(t, c, 1, 2, "SECRET=hunter2")
	dir := filepath.Join(c.dir, "cluster", "proc") // c.dir is 0755
	m, err := c.node(1).srv.MountProcs(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	me := strconv.FormatInt(p.Cpid, 10)

	out, err := exec.Command("ls", dir).CombinedOutput()
	if err != nil || !slices.Contains(strings.Fields(string(out)), me) {
		t.Fatalf("ls %s: %v; lacks %s among %d entries", dir, err, me, len(strings.Fields(string(out))))
	}
	for _, tc := range []struct{ file, has string }{
		{"status", "State:"},
		{"status", "Pid:\t" + strconv.Itoa(p.Pid) + "\n"},
		{"node", "2\n"},
		{"cmdline", "sleep\x001000\x00"},
		{"stat", strconv.Itoa(p.Pid) + " (sleep) "},
		{"environ", "SECRET=hunter2"},
	} {
		b, err := os.ReadFile(filepath.Join(dir, me, tc.file))
		if err != nil || !strings.Contains(string(b), tc.has) {
			t.Errorf("%s/%s = %.80q, %v; want it to hold %q", me, tc.file, b, err, tc.has)
		}
	}
	if out, err := asUser(65534, "cat", filepath.Join(dir, me, "status")); err != nil || !strings.Contains(out, "State:") {
		t.Errorf("nobody cat status = %.80q, %v", out, err)
	}
	if out, err := asUser(65534, "cat", filepath.Join(dir, me, "environ")); err == nil || !strings.Contains(out, "Permission denied") || strings.Contains(out, "hunter2") {
		t.Errorf("nobody cat root's environ = %q, %v; want Permission denied", out, err)
	}
	// Gone from node 2 when it exits. Its cpid then names its caller on
	// node 1 again (the stand-in that `ssi exec` is, which exits with it;
	// here the test itself, which lives on).
	_ = p.Signal(syscall.SIGKILL)
	_, _ = p.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, me, "node"))
		if errors.Is(err, fs.ErrNotExist) || (err == nil && string(b) == "1\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node of the exited program: %q, %v; want ENOENT or node 1's stand-in", b, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// asUser runs a command as uid and gid uid and returns its output.
func asUser(uid uint32, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPsLargeTables: tables over gRPC's default 4 MiB (long command
// lines, as Java's) still travel, from a peer and to the caller.
func TestPsLargeTables(t *testing.T) {
	c := startCluster(t, 2)
	big := strings.Repeat("x", 100<<10)
	var want []cpid.CPID
	for range 4 {
		args := []string{"sh", "-c", "sleep 1000; :", "ps-large"}
		for range 15 {
			args = append(args, big)
		}
		ctx, cancel := context.WithCancel(context.Background())
		p, err := c.client(1).Exec(ctx, 2, vproc.Cmd{Args: args, Env: []string{"PATH=/usr/bin:/bin"}})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// The shell's sleep would outlive a SIGKILL of the shell alone
			// (no scope holds them here) and keep whatever descriptors the
			// test inherited: kill its process group, which the runner made.
			_ = syscall.Kill(-p.Pid, syscall.SIGKILL)
			_ = p.Signal(syscall.SIGKILL)
			cancel()
			_, _ = p.Wait()
		})
		want = append(want, cpid.CPID(p.Cpid))
	}
	tab := ps(t, c, 1, vproc.PsFilter{Filter: proctable.Filter{Nodes: []uint32{2}}})
	if len(tab.Failures) != 0 {
		t.Fatalf("failures: %+v", tab.Failures)
	}
	for _, w := range want {
		if !slices.ContainsFunc(tab.Rows(), func(r proctable.Row) bool { return r.CPID == w && len(r.Args) == 19 }) {
			t.Errorf("no row of cpid %d with its 19 arguments", w)
		}
	}
}
