package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/internal/roottest"
	"github.com/openssi/openssi/internal/rpc"
	"github.com/openssi/openssi/internal/rpc/rpctest"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// signalHelperEnv names the variable that makes the test binary a
// vproc client for the signal tests (see TestMain): a JSON signalCall.
const signalHelperEnv = "VPROCD_TEST_SIGNAL_HELPER"

// signalCall is what the helper does: with Nodes, start a detached
// `sleep 1000` on each through Socket, print their cpids and pids, then
// wait (in its own process group) until killed; with Kill, kill it (a
// group with Group) with Signal; with Renice, renice it to Nice.
type signalCall struct {
	Socket string
	Nodes  []int
	Kill   int64
	Group  bool
	Signal int
	Renice int64
	Nice   int
	// Strace traces that cpid with StraceArgs, its output on stdout.
	Strace     int64
	StraceArgs []string
	// Attached runs that command on node Node and waits for it,
	// passing on SIGINT, SIGTERM, SIGHUP and SIGQUIT as ssi exec does
	// (printing "exec got SIG" for each).
	Attached []string
	Node     int
}

func signalHelper(v string) int {
	var call signalCall
	if err := json.Unmarshal([]byte(v), &call); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 100
	}
	ctx := context.Background()
	cl, err := vproc.New(ctx, vproc.WithSocket(call.Socket))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 101
	}
	defer cl.Close()
	switch {
	case len(call.Nodes) > 0:
		for _, n := range call.Nodes {
			p, err := cl.Exec(ctx, n, vproc.Cmd{Detach: true, Args: []string{"sleep", "1000"}, Dir: "/", Env: []string{"PATH=/usr/bin:/bin"}})
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 102
			}
			fmt.Println(p.Cpid, p.Pid)
		}
		fmt.Println("ready")
		time.Sleep(time.Hour)
	case call.Kill != 0 && call.Group:
		_, err = cl.KillGroup(ctx, call.Kill, syscall.Signal(call.Signal))
	case call.Kill != 0:
		err = cl.Kill(ctx, call.Kill, syscall.Signal(call.Signal))
	case call.Renice != 0:
		_, err = cl.Renice(ctx, call.Renice, call.Nice)
	case len(call.Attached) > 0:
		p, err := cl.Exec(ctx, call.Node, vproc.Cmd{Args: call.Attached, Dir: "/", Env: []string{signalCounterEnv + "=1"}, Stdout: os.Stdout, Stderr: os.Stderr})
		if err != nil {
			fmt.Println(err)
			return 102
		}
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
		go func() {
			for sig := range sigs {
				fmt.Println("exec got", sig)
				_ = p.Signal(sig.(syscall.Signal))
			}
		}()
		st, _ := p.Wait()
		return st.Code
	case call.Strace != 0:
		var p *vproc.Process
		p, err = cl.Strace(ctx, call.Strace, call.StraceArgs, vproc.Cmd{Stdin: strings.NewReader(""), Stdout: os.Stdout, Stderr: os.Stdout, Dir: "/", Env: []string{"PATH=/usr/bin:/bin"}})
		if err == nil {
			st, _ := p.Wait()
			return st.Code
		}
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, vproc.ErrPermission):
		fmt.Println(err)
		return 3
	case errors.Is(err, vproc.ErrNoProcess):
		fmt.Println(err)
		return 1
	}
	fmt.Println(err)
	return 104
}

// signalHelperCmd is the helper as uid (root when 0), in a process group
// of its own.
func signalHelperCmd(t *testing.T, c *testCluster, uid uint32, call signalCall) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(c.dir, "signal-helper")
	if _, err := os.Stat(bin); err != nil {
		b, err := os.ReadFile(exe)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	js, _ := json.Marshal(call)
	cmd := exec.Command(bin)
	cmd.Env = []string{signalHelperEnv + "=" + string(js)}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if uid != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{uid}}
	}
	return cmd
}

// killAs runs one kill (or renice) of the helper as uid and returns its
// output and exit status.
func killAs(t *testing.T, c *testCluster, uid uint32, call signalCall) (string, int) {
	t.Helper()
	out, err := signalHelperCmd(t, c, uid, call).CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// killRunning kills every process whose argv[0] is prog.
func killRunning(prog string) {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		b, _ := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		if arg0, _, _ := strings.Cut(string(b), "\x00"); arg0 == prog {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// waitDead waits up to 5s for pid to end.
func waitDead(t *testing.T, pid int, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still runs", what, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKillAcrossNodes: a process started on node 2 from node 1 is killed
// from node 3 by its cpid; unknown cpids and DOWN nodes are told apart.
func TestKillAcrossNodes(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, pid := startSleep(t, c, ctx, 1, 2)
	defer syscall.Kill(pid, syscall.SIGKILL)
	if p.Cpid != CPID(1, os.Getpid()) {
		t.Fatalf("cpid %d, want its origin's %d", p.Cpid, CPID(1, os.Getpid()))
	}
	if got := c.node(2).srv.LocalCPID(int32(pid)); got != p.Cpid {
		t.Errorf("node 2 names pid %d %d, want %d", pid, got, p.Cpid)
	}
	cl := c.client(3)
	if err := cl.Kill(ctx, p.Cpid, 0); err != nil {
		t.Fatalf("signal 0 to cpid %d: %v", p.Cpid, err)
	}
	if err := cl.Kill(ctx, p.Cpid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM to cpid %d: %v", p.Cpid, err)
	}
	if st, err := p.Wait(); err != nil || st.Signal != int(syscall.SIGTERM) || st.Code != 128+int(syscall.SIGTERM) {
		t.Fatalf("status %+v %v, want killed by SIGTERM", st, err)
	}
	// (Its cpid now names its caller, this test, as a plain process of
	// node 1.) No process; a process of a DOWN node; a cpid that is no
	// cpid.
	gone := int64(cpid.MustMake(2, cpid.MaxPID))
	if err := cl.Kill(ctx, gone, syscall.SIGTERM); !errors.Is(err, vproc.ErrNoProcess) {
		t.Errorf("kill of no process: %v, want ErrNoProcess", err)
	}
	for n := uint32(1); n <= 3; n++ {
		c.node(n).srv.Membership(2, false)
	}
	if err := cl.Kill(ctx, gone, syscall.SIGTERM); !errors.Is(err, vproc.ErrNoProcess) || !strings.Contains(err.Error(), "node 2 is down") {
		t.Errorf("kill on a DOWN node: %v, want ErrNoProcess saying node 2 is down", err)
	}
	if err := cl.Kill(ctx, 12, syscall.SIGTERM); !errors.Is(err, vproc.ErrRefused) {
		t.Errorf("kill of cpid 12 (node 0): %v, want ErrRefused", err)
	}
}

// TestRenice sets the nice value of a process on another node.
func TestRenice(t *testing.T) {
	c := startCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, pid := startSleep(t, c, ctx, 1, 2)
	defer syscall.Kill(pid, syscall.SIGKILL)
	old, err := c.client(1).Renice(ctx, p.Cpid, 7)
	if err != nil {
		t.Fatal(err)
	}
	st, err := readProc(int32(pid))
	if err != nil || st.nice != 7 || old != 0 {
		t.Fatalf("nice %d (%v), old %d; want 7, old 0", st.nice, err, old)
	}
	if _, err := c.client(1).Renice(ctx, p.Cpid, 20); !errors.Is(err, vproc.ErrRefused) {
		t.Errorf("renice to 20: %v, want ErrRefused", err)
	}
}

// startGroup starts, as uid, a helper in its own process group on node 1
// that starts a detached sleep on each of nodes; it returns the group's
// cpgid, the helper and the sleeps' pids (their cpids in cpids).
func startGroup(t *testing.T, c *testCluster, uid uint32, nodes ...int) (cpid.CPID, *exec.Cmd, []int) {
	g, cmd, pids, _ := startGroupCPIDs(t, c, uid, nodes...)
	return g, cmd, pids
}

func startGroupCPIDs(t *testing.T, c *testCluster, uid uint32, nodes ...int) (cpid.CPID, *exec.Cmd, []int, []int64) {
	t.Helper()
	cmd := signalHelperCmd(t, c, uid, signalCall{Socket: c.node(1).socket, Nodes: nodes})
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	var cpids []int64
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	r := bufio.NewReader(out)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("helper: %v", err)
		}
		if line == "ready\n" {
			break
		}
		f := strings.Fields(line)
		x, _ := strconv.ParseInt(f[0], 10, 64)
		pid, _ := strconv.Atoi(f[1])
		pids, cpids = append(pids, pid), append(cpids, x)
	}
	go io.Copy(io.Discard, r)
	return cpid.MustMake(1, int32(cmd.Process.Pid)), cmd, pids, cpids
}

// TestKillGroupAcrossNodes: the programs started from one process group
// on node 1, on nodes 1, 2 and 3, form one cluster process group with
// it; one kill -- -CPGID from node 2 reaches every member once.
func TestKillGroupAcrossNodes(t *testing.T) {
	c := startCluster(t, 3)
	g, helper, pids := startGroup(t, c, 0, 1, 2, 3)
	for _, pid := range pids {
		if !alive(pid) {
			t.Fatalf("pid %d not running", pid)
		}
	}
	n, err := c.client(2).KillGroup(context.Background(), int64(g), syscall.SIGKILL)
	if err != nil {
		t.Fatal(err)
	}
	// The helper and its three programs.
	if n != 4 {
		t.Errorf("signaled %d, want 4", n)
	}
	for i, pid := range pids {
		waitDead(t, pid, fmt.Sprintf("the member on node %d", i+1))
	}
	_ = helper.Wait()
	if _, err := c.client(2).KillGroup(context.Background(), int64(g), syscall.SIGKILL); !errors.Is(err, vproc.ErrNoProcess) {
		t.Errorf("kill of an empty group: %v, want ErrNoProcess", err)
	}
}

// TestKillOnlyOwn (security): a caller that is not root may not signal
// or renice another user's process on another node, alone or in a group;
// it may its own. vprocd runs as root: only its check stops it.
func TestKillOnlyOwn(t *testing.T) {
	roottest.Need(t)
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	root, pid := startSleep(t, c, ctx, 1, 2)
	defer syscall.Kill(pid, syscall.SIGKILL)
	sock := c.node(3).socket
	for _, call := range []signalCall{
		{Socket: sock, Kill: root.Cpid, Signal: int(syscall.SIGKILL)},
		{Socket: sock, Kill: root.Cpid, Signal: 0},
		{Socket: sock, Renice: root.Cpid, Nice: 19},
	} {
		out, code := killAs(t, c, 65534, call)
		if code != 3 || !strings.Contains(out, "may not") {
			t.Errorf("%+v as uid 65534: exit %d %q, want 3 and permission denied", call, code, out)
		}
	}
	if !alive(pid) {
		t.Fatal("uid 65534 killed root's process on node 2")
	}
	// A group of root's: nothing in it may be signaled by uid 65534.
	g, _, pids := startGroup(t, c, 0, 2, 3)
	out, code := killAs(t, c, 65534, signalCall{Socket: sock, Kill: int64(g), Group: true, Signal: int(syscall.SIGKILL)})
	if code != 3 {
		t.Errorf("group kill of root's group as uid 65534: exit %d %q, want 3", code, out)
	}
	for _, p := range pids {
		if !alive(p) {
			t.Fatalf("uid 65534 killed root's pid %d in group %s", p, g)
		}
	}
	// Its own, on another node: yes.
	_, _, pids, cpids := startGroupCPIDs(t, c, 65534, 2)
	if out, code := killAs(t, c, 65534, signalCall{Socket: sock, Kill: cpids[0], Signal: int(syscall.SIGKILL)}); code != 0 {
		t.Fatalf("kill of its own process: exit %d %q", code, out)
	}
	waitDead(t, pids[0], "uid 65534's own process")
}

// originLink starts `sh -c 'echo $$; exec sleep 1000'` on node 2 as if
// for a caller of node 1 (its vprocd's certificate), with or without a
// terminal there, and returns the pid and how to break the link.
func originLink(t *testing.T, c *testCluster, callerPID int32, tty bool) (cpid.CPID, int, func()) {
	t.Helper()
	src := c.source(1, rpctest.NodeName(1), ServiceName)
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := rpc.Dial(ctx, src, c.node(2).addr, rpc.NodeIdentity(ServiceName, rpctest.NodeName(2)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := vprocpeerv1.NewVprocPeerClient(conn).Exec(rpc.WithoutTimeout(ctx))
	if err != nil {
		t.Fatal(err)
	}
	x := cpid.MustMake(1, callerPID)
	start := &vprocpeerv1.Start{Origin: 1, Caller: &vprocpeerv1.Caller{Uid: uint32(os.Geteuid()), Gid: uint32(os.Getegid()), Pid: callerPID},
		Request: &vprocv1.ExecRequest{Node: 2, Argv: [][]byte{[]byte("sleep"), []byte("1000")}, Env: [][]byte{[]byte("PATH=/usr/bin:/bin")}, Cwd: []byte("/")},
		Cpgid:   int64(x), Tty: tty, Cpid: int64(x)}
	if err := s.Send(&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Start{Start: start}}); err != nil {
		t.Fatal(err)
	}
	m, err := s.Recv()
	if err != nil || m.GetStarted() == nil {
		t.Fatalf("first reply %v %v, want Started", m, err)
	}
	pid := int(m.GetStarted().Pid)
	if m.GetStarted().Cpid != int64(x) {
		t.Fatalf("cpid %d, want the origin's %s", m.GetStarted().Cpid, x)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return x, pid, func() { cancel(); conn.Close() }
}

// TestOriginDown: when the origin node goes DOWN its remote programs run
// on (and stay killable from a survivor), except those whose caller had
// a terminal there, which get SIGHUP; a link that breaks while the origin
// stays UP is a caller gone: the program is killed (after OriginGrace).
func TestOriginDown(t *testing.T) {
	c := startClusterWith(t, 3, Config{OriginGrace: 2 * time.Second})
	x, plain, breakPlain := originLink(t, c, 4242, false)
	_, tty, breakTTY := originLink(t, c, 4243, true)
	breakPlain()
	breakTTY()
	time.Sleep(200 * time.Millisecond) // the target sees the links break
	for n := uint32(2); n <= 3; n++ {
		c.node(n).srv.Membership(1, false)
	}
	waitDead(t, tty, "the program of a caller with a terminal on the DOWN origin")
	time.Sleep(3 * time.Second) // past OriginGrace
	if !alive(plain) {
		t.Fatal("the program of a caller without a terminal died with its origin")
	}
	// Killable by its cpid from a survivor: the origin's surrogate
	// answers for it, from the survivors' reports.
	if err := c.client(3).Kill(context.Background(), int64(x), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitDead(t, plain, "the program the survivor killed")

	// The origin (node 1) UP again: a broken link without NODEDOWN.
	for n := uint32(2); n <= 3; n++ {
		c.node(n).srv.Membership(1, true)
	}
	_, pid, breakLink := originLink(t, c, 4244, false)
	breakLink()
	time.Sleep(time.Second)
	if !alive(pid) {
		t.Fatal("killed before OriginGrace: a NODEDOWN may still come")
	}
	waitDead(t, pid, "the program of a link broken while its origin stays UP")
}

// TestStopKillsAttached: a vprocd that stops kills the programs whose
// origin's link ends, without waiting for a NODEDOWN (OriginGrace is
// 10s; waitDead gives up after 5s).
func TestStopKillsAttached(t *testing.T) {
	c := startCluster(t, 2)
	_, pid, breakLink := originLink(t, c, 4242, false)
	c.node(2).srv.Stop()
	breakLink()
	waitDead(t, pid, "the program of a stopping vprocd")
}

// TestSignalPeerMustBeTheOriginsVprocd: a kill between nodes carries the
// caller's uid, so only the vprocd of the node it claims to come from is
// believed: another node's vprocd or another daemon is refused, and the
// process lives.
func TestSignalPeerMustBeTheOriginsVprocd(t *testing.T) {
	c := startCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, pid := startSleep(t, c, ctx, 2, 2)
	defer syscall.Kill(pid, syscall.SIGKILL)
	for _, tc := range []struct {
		name     string
		node     string
		services []string
	}{
		{"the vprocd of node 3 claiming node 1", rpctest.NodeName(3), []string{ServiceName}},
		{"node 1's dlmd", rpctest.NodeName(1), []string{rpc.ServiceName("dlmd")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := rpc.Dial(ctx, c.source(9, tc.node, tc.services...), c.node(2).addr, rpc.NodeIdentity(ServiceName, rpctest.NodeName(2)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			cl := vprocpeerv1.NewVprocSignalPeerClient(conn)
			_, err = cl.Kill(ctx, &vprocpeerv1.PeerKill{Origin: 1, Request: &vprocv1.KillRequest{Cpid: p.Cpid, Signal: int32(syscall.SIGKILL)}})
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("kill: %v, want PermissionDenied", err)
			}
			_, err = cl.Renice(ctx, &vprocpeerv1.PeerRenice{Origin: 1, Request: &vprocv1.ReniceRequest{Cpid: p.Cpid, Nice: 5}})
			if status.Code(err) != codes.PermissionDenied {
				t.Errorf("renice: %v, want PermissionDenied", err)
			}
			if !alive(pid) {
				t.Fatal("a refused peer killed the process")
			}
		})
	}
}

// TestExecSignalOnlyForItsCaller: a signal sent beside an exec's stream
// (PeerKill.exec) reaches the program only for the caller that started
// that exec, from its origin's vprocd: the origin's vprocd claiming
// another uid is refused, as are another node's vprocd claiming to be the
// origin of the exec, a request that is not for the program here and a
// signal a caller may not send in the stream either (SIGALRM); the right
// one is delivered (SIGCONT: the program lives on).
func TestExecSignalOnlyForItsCaller(t *testing.T) {
	c := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, pid := startSleep(t, c, ctx, 1, 2)
	defer syscall.Kill(pid, syscall.SIGKILL)
	client := func(from uint32) vprocpeerv1.VprocSignalPeerClient {
		conn, err := rpc.Dial(ctx, c.source(9, rpctest.NodeName(from), ServiceName), c.node(2).addr, rpc.NodeIdentity(ServiceName, rpctest.NodeName(2)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return vprocpeerv1.NewVprocSignalPeerClient(conn)
	}
	uid := uint32(os.Getuid())
	for _, tc := range []struct {
		name string
		from uint32
		req  *vprocpeerv1.PeerKill
		sig  syscall.Signal
		want codes.Code
	}{
		{"another uid", 1, &vprocpeerv1.PeerKill{Origin: 1, CallerUid: uid + 1000, Here: true, Exec: true}, syscall.SIGKILL, codes.PermissionDenied},
		{"another node's vprocd", 3, &vprocpeerv1.PeerKill{Origin: 3, CallerUid: uid, Here: true, Exec: true}, syscall.SIGKILL, codes.PermissionDenied},
		{"not here", 1, &vprocpeerv1.PeerKill{Origin: 1, CallerUid: uid, Exec: true}, syscall.SIGKILL, codes.InvalidArgument},
		{"a signal not for callers", 1, &vprocpeerv1.PeerKill{Origin: 1, CallerUid: uid, Here: true, Exec: true}, syscall.SIGALRM, codes.InvalidArgument},
		{"its caller", 1, &vprocpeerv1.PeerKill{Origin: 1, CallerUid: uid, Here: true, Exec: true}, syscall.SIGCONT, codes.OK},
	} {
		tc.req.Request = &vprocv1.KillRequest{Cpid: p.Cpid, Signal: int32(tc.sig)}
		r, err := client(tc.from).Kill(ctx, tc.req)
		if status.Code(err) != tc.want || tc.want == codes.OK && r.GetSignaled() != 1 {
			t.Errorf("%s: %v %v, want %v", tc.name, r, err, tc.want)
		}
		if !alive(pid) {
			t.Fatalf("%s: the program died", tc.name)
		}
	}
}

// signalCounterEnv names the variable that makes the test binary a
// program that prints "ready", then "TERM" for each SIGTERM it gets (Go's
// handler takes each at once: two sent apart are two lines).
const signalCounterEnv = "VPROCD_TEST_SIGNAL_COUNTER"

func signalCounter() int {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM)
	fmt.Println("ready")
	for range sigs {
		fmt.Println("TERM")
	}
	return 0
}

// TestGroupSignalOnceThroughAttachedExec: the group kill of a shell job
// whose attached exec runs a program on node 2 reaches that program once:
// through the exec, a member of the job's group on node 1, which passes
// it on; node 2 leaves the program to it rather than signal it too.
func TestGroupSignalOnceThroughAttachedExec(t *testing.T) {
	c := startCluster(t, 2)
	prog := filepath.Join(c.dir, "signal-helper") // the binary signalHelperCmd lays down
	job := signalHelperCmd(t, c, 0, signalCall{Socket: c.node(1).socket, Node: 2, Attached: []string{prog}})
	var out lockedBuffer
	job.Stdout, job.Stderr = &out, &out
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-job.Process.Pid, syscall.SIGKILL)
		_ = job.Wait()
		// The program on node 2 leads a group of its own and outlives
		// the job when its exec's stream ends with the test's cluster.
		killRunning(prog)
	})
	waitOutput := func(want string, n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(out.String(), want) < n {
			if time.Now().After(deadline) {
				t.Fatalf("no %d %q in 10s:\n%s", n, want, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitOutput("ready\n", 1)
	// The job's cluster process group: its group on node 1 (the helper
	// leads its own).
	g := CPID(1, job.Process.Pid)
	n, err := c.client(2).KillGroup(context.Background(), g, syscall.SIGTERM)
	if err != nil || n < 1 {
		t.Fatalf("kill -TERM -- -%d: %d signaled, %v", g, n, err)
	}
	waitOutput("TERM\n", 1)
	time.Sleep(500 * time.Millisecond) // time for a second delivery to show
	if got, exec := strings.Count(out.String(), "TERM\n"), strings.Count(out.String(), "exec got terminated\n"); got != 1 || exec != 1 {
		t.Fatalf("the program got SIGTERM %d times, its exec %d; want once each:\n%s", got, exec, out.String())
	}
}
