package runner

import (
	"errors"
	"io"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openssi/openssi/internal/roottest"
)

// newTestWarm returns a Warm whose gates' pids arrive on ready once idle,
// and the pids Prepare was called for.
func newTestWarm(t *testing.T, perCaller, max int, now func() time.Time) (w *Warm, ready, prepared chan int) {
	ready, prepared = make(chan int, 16), make(chan int, 16)
	w = NewWarm(WarmConfig{PerCaller: perCaller, Max: max, Idle: time.Minute, Now: now,
		Prepare: func(pid int, uid uint32) error {
			if uid != self().UID {
				t.Errorf("gate %d prepared for uid %d", pid, uid)
			}
			prepared <- pid
			return nil
		}})
	w.ready = func(pid int) { ready <- pid }
	t.Cleanup(w.Close)
	return w, ready, prepared
}

func waitPid(t *testing.T, c chan int) int {
	t.Helper()
	select {
	case pid := <-c:
		return pid
	case <-time.After(10 * time.Second):
		t.Fatal("no gate made")
		return 0
	}
}

func output(t *testing.T, p *Proc) (string, Status) {
	t.Helper()
	p.Open()
	p.CloseStdin()
	out, _ := io.ReadAll(p.Stdout)
	return string(out), p.Wait()
}

// TestWarmRunsTheNextProgram: a caller's first program starts as a new
// process; the gate made after it, already prepared (in its scope), runs
// the caller's next program: with its own process group, directory,
// environment, arguments and stdio, and the status a shell reports.
func TestWarmRunsTheNextProgram(t *testing.T) {
	w, ready, prepared := newTestWarm(t, 1, 4, nil)
	p, err := w.Start(Spec{Argv: []string{"true"}, Dir: "/", Cred: self()})
	if err != nil {
		t.Fatal(err)
	}
	if p.InScope {
		t.Fatal("first program: InScope with no gate made yet")
	}
	if _, st := output(t, p); st.Code != 0 {
		t.Fatalf("first program: %+v", st)
	}
	gatePid := waitPid(t, ready)
	if got := waitPid(t, prepared); got != gatePid {
		t.Fatalf("prepared %d, idle %d", got, gatePid)
	}
	dir := t.TempDir()
	p, err = w.Start(Spec{Argv: []string{"sh", "-c", `read x; echo "$x $A $PWD" $(cut -d" " -f5,6 /proc/self/stat); echo err >&2; exit 5`},
		Env: []string{"PATH=/usr/bin:/bin", "A=env"}, Dir: dir, Cred: self()})
	if err != nil {
		t.Fatal(err)
	}
	if !p.InScope || p.Pid != gatePid {
		t.Fatalf("second program: InScope %v pid %d, want the gate %d", p.InScope, p.Pid, gatePid)
	}
	go func() { p.Stdin.Write([]byte("in\n")); p.CloseStdin() }()
	errc := make(chan string)
	go func() { b, _ := io.ReadAll(p.Stderr); errc <- string(b) }()
	out, _ := io.ReadAll(p.Stdout)
	st := p.Wait()
	pid := strconv.Itoa(gatePid)
	sid, _ := unix.Getsid(0)
	want := "in env " + dir + " " + pid + " " + strconv.Itoa(sid) + "\n"
	if string(out) != want || <-errc != "err\n" || st.Code != 5 {
		t.Fatalf("out %q (want %q) status %+v", out, want, st)
	}
}

// TestWarmTerminal: through a gate, a terminal program leads a session
// with the terminal as its controlling one.
func TestWarmTerminal(t *testing.T) {
	w, ready, _ := newTestWarm(t, 1, 4, nil)
	w.refill(credKey(self()), self())
	gatePid := waitPid(t, ready)
	p, err := w.Start(Spec{Argv: []string{"sh", "-c", `tty; cut -d" " -f6,8 /proc/self/stat`}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Cred: self(), TTY: true, Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	if !p.InScope || p.Pid != gatePid {
		t.Fatalf("InScope %v pid %d, want the gate %d", p.InScope, p.Pid, gatePid)
	}
	var out []byte
	buf := make([]byte, 256)
	for {
		n, err := p.Stdout.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil || strings.Count(string(out), "\n") >= 2 {
			break
		}
	}
	st := p.Wait()
	lines := strings.Fields(string(out))
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "/dev/pts/") || lines[1] != strconv.Itoa(gatePid) || lines[2] != strconv.Itoa(gatePid) || st.Code != 0 {
		t.Fatalf("out %q status %+v: want the terminal, then session and foreground group %d", out, st, gatePid)
	}
}

// TestWarmDetached: a detached program through a gate has no stdio of
// ours and a session of its own.
func TestWarmDetached(t *testing.T) {
	w, ready, _ := newTestWarm(t, 1, 4, nil)
	w.refill(credKey(self()), self())
	gatePid := waitPid(t, ready)
	p, err := w.Start(Spec{Argv: []string{"sh", "-c", `[ "$(cut -d" " -f6 /proc/self/stat)" = "$$" ] || exit 1; exit 7`}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Cred: self(), Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	if !p.InScope || p.Pid != gatePid || p.Stdout != nil {
		t.Fatalf("InScope %v pid %d (gate %d) stdout %v", p.InScope, p.Pid, gatePid, p.Stdout)
	}
	if st := p.Wait(); st.Code != 7 {
		t.Fatalf("status %+v, want 7", st)
	}
}

// TestWarmGateGone: a gate that died while idle (its user killed it) is
// passed over: the program starts as a new process.
func TestWarmGateGone(t *testing.T) {
	w, ready, _ := newTestWarm(t, 1, 4, nil)
	w.refill(credKey(self()), self())
	gatePid := waitPid(t, ready)
	if err := syscall.Kill(gatePid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p, err := w.Start(Spec{Argv: []string{"sh", "-c", "echo ok"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Cred: self()})
	if err != nil {
		t.Fatal(err)
	}
	if p.InScope || p.Pid == gatePid {
		t.Fatalf("ran in the dead gate %d", gatePid)
	}
	if out, st := output(t, p); out != "ok\n" || st.Code != 0 {
		t.Fatalf("out %q status %+v", out, st)
	}
}

// TestWarmBoundsAndTrim: no more than PerCaller gates of one identity nor
// Max in all wait; Trim ends those idle for Idle, and an ended gate exits.
func TestWarmBoundsAndTrim(t *testing.T) {
	now := time.Unix(1000, 0)
	w, ready, _ := newTestWarm(t, 2, 2, func() time.Time { return now })
	me := self()
	for i := 0; i < 3; i++ {
		w.refill(credKey(me), me)
	}
	other := me
	other.Groups = []uint32{me.GID}
	w.refill(credKey(other), other) // over Max
	first, second := waitPid(t, ready), waitPid(t, ready)
	select {
	case pid := <-ready:
		t.Fatalf("a third gate %d", pid)
	default:
	}
	w.mu.Lock()
	idle, total := len(w.idle[credKey(me)]), w.total
	w.mu.Unlock()
	if idle != 2 || total != 2 {
		t.Fatalf("idle %d total %d, want 2 and 2", idle, total)
	}
	if left := w.Trim(); left != 2 {
		t.Fatalf("Trim before Idle left %d", left)
	}
	now = now.Add(time.Minute)
	if left := w.Trim(); left != 0 {
		t.Fatalf("Trim after Idle left %d", left)
	}
	for _, pid := range []int{first, second} {
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if syscall.Kill(pid, 0) == nil {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			t.Fatalf("trimmed gate %d still there: %s", pid, b)
		}
	}
}

// TestWarmGateIsTheCallers: as root, a gate is its caller's process
// (uid, gid and groups) from the start, and the program it runs too; a
// gate of one identity is never used for another, even of the same uid.
func TestWarmGateIsTheCallers(t *testing.T) {
	roottest.Need(t)
	const nobody = 65534
	if _, err := user.LookupId(strconv.Itoa(nobody)); err != nil {
		t.Skipf("uid %d is not a user here: %v", nobody, err)
	}
	w, ready, _ := newTestWarm(t, 1, 4, nil)
	w.cfg.Prepare = func(int, uint32) error { return nil }
	caller := Cred{UID: nobody, GID: nobody, Groups: []uint32{nobody}}
	w.refill(credKey(caller), caller)
	gatePid := waitPid(t, ready)
	st, err := os.ReadFile("/proc/" + strconv.Itoa(gatePid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534\n", "Gid:\t65534\t65534\t65534\t65534\n", "Groups:\t65534 \n"} {
		if !strings.Contains(string(st), want) {
			t.Fatalf("gate %d's status lacks %q:\n%s", gatePid, want, st)
		}
	}
	other := Cred{UID: nobody, GID: nobody}
	p, err := w.Start(Spec{Argv: []string{"id"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Cred: other})
	if err != nil {
		t.Fatal(err)
	}
	if p.InScope || p.Pid == gatePid {
		t.Fatal("a gate of groups [65534] ran a program of no groups")
	}
	output(t, p)
	p, err = w.Start(Spec{Argv: []string{"id", "-u"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Cred: caller})
	if err != nil {
		t.Fatal(err)
	}
	if out, st := output(t, p); !p.InScope || out != "65534\n" || st.Code != 0 {
		t.Fatalf("InScope %v out %q status %+v", p.InScope, out, st)
	}
}

// TestWarmKeepsTheGateOnARefusal: a program that is not found (or any
// refusal before it starts) leaves the caller's idle gate waiting, not
// taken and lost: repeated refusals must not grow the caller's processes.
func TestWarmKeepsTheGateOnARefusal(t *testing.T) {
	w, ready, _ := newTestWarm(t, 1, 4, nil)
	w.refill(credKey(self()), self())
	gatePid := waitPid(t, ready)
	for i := 0; i < 3; i++ {
		_, err := w.Start(Spec{Argv: []string{"no-such-command-x"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Cred: self()})
		var se *StartError
		if !errors.As(err, &se) || se.Code != ExitNotFound {
			t.Fatalf("Start: %v, want not found", err)
		}
	}
	w.mu.Lock()
	idle, total := w.idle[credKey(self())], w.total
	w.mu.Unlock()
	if len(idle) != 1 || idle[0].cmd.Process.Pid != gatePid || total != 1 {
		t.Fatalf("after refusals: idle %d (want the gate %d), total %d", len(idle), gatePid, total)
	}
}

// TestWarmSilentGateRunsNothingTwice: a gate that does not answer in
// time (stopped here; starved on a loaded node) may still run the
// program later, so the program is refused, not started again elsewhere,
// and the gate is ended.
func TestWarmSilentGateRunsNothingTwice(t *testing.T) {
	defer func(d time.Duration) { gateAnswer = d }(gateAnswer)
	gateAnswer = 200 * time.Millisecond
	w, ready, _ := newTestWarm(t, 1, 4, nil)
	w.refill(credKey(self()), self())
	gatePid := waitPid(t, ready)
	if err := syscall.Kill(gatePid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	mark := t.TempDir() + "/ran"
	_, err := w.Start(Spec{Argv: []string{"sh", "-c", "echo x >> " + mark}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Cred: self()})
	var se *StartError
	if !errors.As(err, &se) || se.Code != ExitRefused || !strings.Contains(se.Msg, "did not answer") {
		t.Fatalf("Start through a stopped gate: %v, want refused", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(gatePid, 0) == nil && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if syscall.Kill(gatePid, 0) == nil {
		t.Fatalf("the silent gate %d is still there", gatePid)
	}
	if b, err := os.ReadFile(mark); err == nil {
		t.Fatalf("the program ran anyway: %q", b)
	}
}

// TestWarmNoGateForARefusedCaller: a caller refused before its program
// starts (a uid that is no user here) gets no gate made for it.
func TestWarmNoGateForARefusedCaller(t *testing.T) {
	w, _, _ := newTestWarm(t, 1, 4, nil)
	ghost := Cred{UID: 3999999, GID: 3999999}
	_, err := w.Start(Spec{Argv: []string{"true"}, Dir: "/", Cred: ghost})
	var se *StartError
	if !errors.As(err, &se) || se.Code != ExitRefused {
		t.Fatalf("Start as uid %d: %v, want refused", ghost.UID, err)
	}
	w.mu.Lock()
	total := w.total
	w.mu.Unlock()
	if total != 0 {
		t.Fatalf("%d gates made or being made for a refused caller", total)
	}
}

// TestWarmGivenStdio: a gate runs a program with the stdio files given
// (Spec.Stdio) as its own, and the runner keeps no copy of its own.
func TestWarmGivenStdio(t *testing.T) {
	w, ready, _ := newTestWarm(t, 1, 4, nil)
	p, err := w.Start(Spec{Argv: []string{"true"}, Dir: "/", Cred: self()})
	if err != nil {
		t.Fatal(err)
	}
	output(t, p)
	gatePid := waitPid(t, ready)
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	p, err = w.Start(Spec{Argv: []string{"sh", "-c", `read x; echo "got $x" >&2`}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Cred: self(),
		Stdio: [3]*os.File{inR, nil, outW}})
	if err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	if !p.InScope || p.Pid != gatePid || p.Stdin != nil || p.Stderr != nil || p.Stdout == nil {
		t.Fatalf("InScope %v pid %d (gate %d), Stdin %v, Stdout %v, Stderr %v: want the gate, a stdout pipe only", p.InScope, p.Pid, gatePid, p.Stdin, p.Stdout, p.Stderr)
	}
	go io.Copy(io.Discard, p.Stdout)
	if _, err := inW.WriteString("in\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(outR)
	if st := p.Wait(); st.Code != 0 || string(b) != "got in\n" {
		t.Fatalf("stderr %q status %+v", b, st)
	}
}
