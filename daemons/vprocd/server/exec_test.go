package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openssi/openssi/client/vproc"
)

// run runs args on node to through node from's vprocd and returns its
// stdout, stderr and status.
func run(t *testing.T, c *testCluster, from, to uint32, stdin string, args ...string) (string, string, vproc.ExitStatus) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.client(from).Exec(ctx, int(to), vproc.Cmd{Args: args, Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb})
	if err != nil {
		t.Fatalf("exec %q on node %d: %v", args, to, err)
	}
	// A remote program is named by its origin: the cpid of its caller
	// there, which stands for it (package cpid).
	want := CPID(to, p.Pid)
	if from != to {
		want = CPID(from, os.Getpid())
	}
	if p.Node != int(to) || p.Cpid != want {
		t.Errorf("started on node %d cpid %d pid %d, want node %d cpid %d", p.Node, p.Cpid, p.Pid, to, want)
	}
	st, err := p.Wait()
	if err != nil {
		t.Fatalf("wait %q: %v", args, err)
	}
	return out.String(), errb.String(), st
}

func TestExecRoundTrip(t *testing.T) {
	c := startCluster(t, 2)
	for _, to := range []uint32{1, 2} {
		out, errs, st := run(t, c, 1, to, "in\n", "sh", "-c", `read x; echo "out $x"; echo err >&2; exit 3`)
		if out != "out in\n" || errs != "err\n" || st.Code != 3 || st.Signal != 0 {
			t.Errorf("node 1 -> %d: stdout %q stderr %q status %+v, want \"out in\\n\" \"err\\n\" 3", to, out, errs, st)
		}
	}
}

func TestExitCodes(t *testing.T) {
	c := startCluster(t, 2)
	for _, tc := range []struct {
		args   []string
		code   int
		signal int
	}{
		{[]string{"true"}, 0, 0},
		{[]string{"sh", "-c", "exit 3"}, 3, 0},
		{[]string{"sh", "-c", "kill -9 $$"}, 128 + 9, 9},
	} {
		_, _, st := run(t, c, 1, 2, "", tc.args...)
		if st.Code != tc.code || st.Signal != tc.signal {
			t.Errorf("%q: status %+v, want code %d signal %d", tc.args, st, tc.code, tc.signal)
		}
	}
	for _, tc := range []struct {
		args []string
		code int
		says string
	}{
		{[]string{"no-such-command-vprocd-test"}, vproc.ExitNotFound, "command not found"},
		{[]string{"/no/such/file"}, vproc.ExitNotFound, "No such file"},
		{[]string{"/etc/passwd"}, vproc.ExitNotExecutable, "Permission denied"},
		{[]string{"/etc"}, vproc.ExitNotExecutable, "Is a directory"},
	} {
		_, err := c.client(1).Exec(context.Background(), 2, vproc.Cmd{Args: tc.args})
		var se *vproc.StartError
		if !errors.As(err, &se) || se.Status.Code != tc.code || !strings.Contains(se.Status.Reason, tc.says) {
			t.Errorf("%q: %v, want a start error with code %d saying %q", tc.args, err, tc.code, tc.says)
		}
	}
}

// TestStdinGiB streams 1 GiB through `cat` on another node and checks it
// comes back unchanged.
func TestStdinGiB(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB through two vprocd")
	}
	c := startCluster(t, 2)
	const size = 1 << 30
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := c.client(1).Exec(ctx, 2, vproc.Cmd{Args: []string{"cat"}})
	if err != nil {
		t.Fatal(err)
	}
	in := sha256.New()
	begin := time.Now()
	go func() {
		// Every byte value, in a pattern that shifts every block.
		block := make([]byte, 1<<20)
		for i := 0; i < size/len(block); i++ {
			for j := range block {
				block[j] = byte(i*7 + j*13 + j>>8)
			}
			in.Write(block)
			if _, err := p.Stdin.Write(block); err != nil {
				t.Error(err)
				return
			}
		}
		p.Stdin.Close()
	}()
	out := sha256.New()
	n, err := io.Copy(out, p.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait()
	if err != nil || st.Code != 0 {
		t.Fatalf("cat: %+v %v", st, err)
	}
	if n != size || !bytes.Equal(in.Sum(nil), out.Sum(nil)) {
		t.Fatalf("got %d bytes back of %d, sha256 %x, sent %x", n, size, out.Sum(nil), in.Sum(nil))
	}
	t.Logf("1 GiB through cat on node 2 in %v (%.0f MB/s)", time.Since(begin), size/time.Since(begin).Seconds()/1e6)
}

func TestSignalForwarded(t *testing.T) {
	c := startCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.client(1).Exec(ctx, 2, vproc.Cmd{Args: []string{"sh", "-c", `trap 'echo got; exit 42' TERM; echo ready; while :; do sleep 0.05; done`}})
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, p.Stderr)
	r := bufio.NewReader(p.Stdout)
	if line, err := r.ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("read %q %v", line, err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	st, err := p.Wait()
	if err != nil || st.Code != 42 || string(rest) != "got\n" {
		t.Fatalf("after SIGTERM: status %+v %v, output %q; want 42 and \"got\"", st, err, rest)
	}
}

func TestPTY(t *testing.T) {
	c := startCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.client(1).Exec(ctx, 2, vproc.Cmd{TTY: true, Rows: 24, Cols: 80,
		Args: []string{"sh", "-c", `stty -echo; test -t 0 && test -t 1 && echo isatty; stty size; read x; stty size`}})
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(p.Stdout)
	want := func(w string) {
		t.Helper()
		line, err := r.ReadString('\n')
		if strings.TrimRight(line, "\r\n") != w {
			t.Fatalf("read %q (%v), want %q", line, err, w)
		}
	}
	want("isatty")
	want("24 80")
	if err := p.Resize(40, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	want("40 100")
	go io.Copy(io.Discard, r)
	if st, err := p.Wait(); err != nil || st.Code != 0 {
		t.Fatalf("status %+v %v", st, err)
	}
}

// alive reports whether process pid exists (and is not a zombie).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := readFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// startSleep starts a shell on node to, through from, that prints the
// pid of the sleep it becomes.
func startSleep(t *testing.T, c *testCluster, ctx context.Context, from, to uint32) (*vproc.Process, int) {
	t.Helper()
	p, err := c.client(from).Exec(ctx, int(to), vproc.Cmd{Args: []string{"sh", "-c", `echo $$; exec sleep 1000`}})
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, p.Stderr)
	line, err := bufio.NewReader(p.Stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid != p.Pid {
		t.Fatalf("pid %q, want %d", line, p.Pid)
	}
	go io.Copy(io.Discard, p.Stdout)
	return p, pid
}

func TestDisconnectKills(t *testing.T) {
	c := startCluster(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	_, pid := startSleep(t, c, ctx, 1, 2)
	if !alive(pid) {
		t.Fatal("not running")
	}
	cancel()
	waitDead(t, pid, "the program of a caller that went")
}

func TestDetach(t *testing.T) {
	c := startCluster(t, 2)
	p, err := c.client(1).Exec(context.Background(), 2, vproc.Cmd{Detach: true, Args: []string{"sleep", "1000"}})
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(p.Pid, syscall.SIGKILL)
	if st, err := p.Wait(); err != nil || st.Code != 0 {
		t.Fatalf("wait of a detached program: %+v %v", st, err)
	}
	time.Sleep(100 * time.Millisecond)
	if !alive(p.Pid) {
		t.Fatal("a detached program died with its caller")
	}
}

// TestNodeDown: the exec of a node that goes DOWN ends at once with 255.
func TestNodeDown(t *testing.T) {
	c := startCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, pid := startSleep(t, c, ctx, 1, 2)
	defer syscall.Kill(pid, syscall.SIGKILL)
	begin := time.Now()
	c.node(1).srv.Membership(2, false)
	st, err := p.Wait()
	if took := time.Since(begin); took > time.Second {
		t.Errorf("ended %v after the NODEDOWN", took)
	}
	if st.Code != vproc.ExitLost || !errors.Is(err, vproc.ErrLost) || !strings.Contains(st.Reason, "node 2 went down") {
		t.Fatalf("status %+v %v, want 255 and ErrLost saying node 2 went down", st, err)
	}
	// A DOWN node and an unknown one are refused at once.
	for _, n := range []int{2, 9} {
		if _, err := c.client(1).Exec(ctx, n, vproc.Cmd{Args: []string{"true"}}); !errors.Is(err, vproc.ErrNoNode) {
			t.Errorf("exec on node %d: %v, want ErrNoNode", n, err)
		}
	}
}

// TestMaxExecsPerUID: past max_execs_per_uid a uid's next program on a
// node is refused with one clear error, and admitted again once one ends.
func TestMaxExecsPerUID(t *testing.T) {
	c := startClusterWith(t, 2, Config{MaxExecsPerUID: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, pid := startSleep(t, c, ctx, 1, 2)
	_, err := c.client(1).Exec(ctx, 2, vproc.Cmd{Args: []string{"true"}})
	if !errors.Is(err, vproc.ErrRefused) || !strings.Contains(err.Error(), "max_execs_per_uid") {
		t.Fatalf("a second program: %v, want ErrRefused naming max_execs_per_uid", err)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	if st, _ := p.Wait(); st.Code != 137 {
		t.Fatalf("status %+v", st)
	}
	if _, _, st := run(t, c, 1, 2, "", "true"); st.Code != 0 {
		t.Fatalf("after the first ended: %+v", st)
	}
}

// TestUnreachableVprocd: a node UP whose vprocd does not answer is one
// clear error, at once.
func TestUnreachableVprocd(t *testing.T) {
	c := startCluster(t, 2)
	c.mu.Lock()
	c.nodes[2].addr = "127.0.0.1:1"
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := c.client(1).Exec(ctx, 2, vproc.Cmd{Args: []string{"true"}})
	if !errors.Is(err, vproc.ErrUnreachable) || !strings.Contains(err.Error(), "node 2's vprocd cannot be reached") {
		t.Fatalf("%v, want ErrUnreachable", err)
	}
}

// gateScopes is a Scoper that records what each program was running when
// it was put in its scope.
type gateScopes struct {
	mu   sync.Mutex
	seen []string
}

func (g *gateScopes) Scope(_ context.Context, pid int, uid uint32, cpid int64) error {
	// The child may not have its new arguments yet: Go's fork returns
	// once the exec released the parent's memory, before the kernel laid
	// out the new program's argv (cmdline reads empty until then).
	var b []byte
	for deadline := time.Now().Add(5 * time.Second); len(b) == 0 && time.Now().Before(deadline); {
		b, _ = os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if len(b) == 0 {
			runtime.Gosched()
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	what := fmt.Sprintf("cpid ok %v", cpid == CPID(1, os.Getpid()))
	if cpid == 0 {
		what = "ahead"
	}
	g.seen = append(g.seen, fmt.Sprintf("%s uid %d %s", strings.SplitN(string(b), "\x00", 2)[0], uid, what))
	return nil
}

func (g *gateScopes) got() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.seen...)
}

// TestScopeBeforeRun: with scopes (under systemd) a program is put in
// its scope while it still waits at its gate, then runs as usual.
func TestScopeBeforeRun(t *testing.T) {
	g := &gateScopes{}
	c := startClusterWith(t, 2, Config{Scopes: g})
	out, _, st := run(t, c, 1, 2, "", "sh", "-c", "echo ran")
	if out != "ran\n" || st.Code != 0 {
		t.Fatalf("output %q status %+v", out, st)
	}
	want := fmt.Sprintf("openssi-vproc-gate uid %d cpid ok true", os.Geteuid())
	if seen := g.got(); len(seen) != 1 || seen[0] != want {
		t.Fatalf("scoped %q, want [%q]", seen, want)
	}
}

// TestWarmGateRunsTheNextProgram: with warm gates, a caller's first
// program makes a gate ahead, put in its scope before any request; the
// caller's next program runs in it without a scope of its own to wait for.
func TestWarmGateRunsTheNextProgram(t *testing.T) {
	g := &gateScopes{}
	c := startClusterWith(t, 2, Config{Scopes: g, WarmGates: 1})
	if out, _, st := run(t, c, 1, 2, "", "sh", "-c", "echo first"); out != "first\n" || st.Code != 0 {
		t.Fatalf("first: output %q status %+v", out, st)
	}
	srv := c.nodes[2].srv // where the program ran
	for deadline := time.Now().Add(10 * time.Second); srv.warm.Idle() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no gate made ahead after the first program")
		}
	}
	uid := os.Geteuid()
	want := []string{fmt.Sprintf("openssi-vproc-gate uid %d ahead", uid), fmt.Sprintf("openssi-vproc-gate uid %d cpid ok true", uid)}
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	// The first program and the gate made meanwhile, in either order.
	if seen := g.got(); !reflect.DeepEqual(sorted(seen), want) {
		t.Fatalf("scoped %q, want %q", seen, want)
	}
	if out, _, st := run(t, c, 1, 2, "", "sh", "-c", "echo second; exit 3"); out != "second\n" || st.Code != 3 {
		t.Fatalf("second: output %q status %+v", out, st)
	}
	if seen := g.got(); len(seen) < 2 || !reflect.DeepEqual(sorted(seen[:2]), want) || slices.Contains(seen[2:], want[1]) {
		t.Fatalf("scoped %q: the second program was scoped itself, not run by the gate", seen)
	}
}
