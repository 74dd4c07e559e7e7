package runner

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openssi/openssi/daemons/vprocd/gate"
	"github.com/openssi/openssi/internal/roottest"
)

func self() Cred {
	return Cred{UID: uint32(os.Geteuid()), GID: uint32(os.Getegid())}
}

func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		ws   syscall.WaitStatus
		want Status
	}{
		{0, Status{Code: 0}},
		{3 << 8, Status{Code: 3}},
		{255 << 8, Status{Code: 255}},
		{9, Status{Code: 137, Signal: 9}},
		{15 | 0x80, Status{Code: 143, Signal: 15}}, // core dumped
		{0x7f | 19<<8, Status{Code: 1}},            // stopped: not an end
	} {
		if got := StatusOf(tc.ws); got != tc.want {
			t.Errorf("StatusOf(%#x) = %+v, want %+v", uint32(tc.ws), got, tc.want)
		}
	}
}

func TestRunPipes(t *testing.T) {
	p, err := Start(Spec{Argv: []string{"sh", "-c", "read x; echo out $x; echo err >&2; exit 3"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Cred: self()})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		p.Stdin.Write([]byte("in\n"))
		p.CloseStdin()
	}()
	errc := make(chan string)
	go func() { b, _ := io.ReadAll(p.Stderr); errc <- string(b) }()
	out, _ := io.ReadAll(p.Stdout)
	st := p.Wait()
	if string(out) != "out in\n" || <-errc != "err\n" || st.Code != 3 {
		t.Fatalf("out %q status %+v", out, st)
	}
}

// TestGroupStopsOnTSTP: a program on pipes leads a process group of its
// own in the runner's session, so SIGTSTP to its group stops it, as a
// shell's job (a group whose parent were in another session would be
// orphaned, and the kernel drops stop signals sent to such a group).
func TestGroupStopsOnTSTP(t *testing.T) {
	p, err := Start(Spec{Argv: []string{"sh", "-c", "cat /proc/self/stat; exec sleep 60"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Cred: self()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { p.Kill(); p.Wait() }()
	p.CloseStdin()
	go io.Copy(io.Discard, p.Stderr)
	line, err := bufio.NewReader(p.Stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid pgrp session
	f := strings.Fields(line[strings.LastIndexByte(line, ')')+1:])
	sid, _ := unix.Getsid(0)
	if pid := strconv.Itoa(p.Pid); len(f) < 4 || f[2] != pid || f[3] != strconv.Itoa(sid) {
		t.Fatalf("stat %q: want process group %s in session %d", line, pid, sid)
	}
	if err := syscall.Kill(-p.Pid, syscall.SIGTSTP); err != nil {
		t.Fatal(err)
	}
	state := func() byte {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/stat")
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) {
			return s[i+2]
		}
		return 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for state() != 'T' && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if st := state(); st != 'T' {
		t.Errorf("after SIGTSTP to its group the program is in state %q, want T (stopped)", st)
	}
}

// TestGivenStdio: files given as the program's stdio are its own (no
// pipes of the runner's, no readers in Proc), made blocking; the note of
// a missing directory is the first line of a given stderr; the caller's
// copies stay open.
func TestGivenStdio(t *testing.T) {
	inR, inW, err := os.Pipe() // non-blocking, as vprocd's own descriptions
	if err != nil {
		t.Fatal(err)
	}
	defer inR.Close()
	defer inW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	defer outW.Close()
	errR, errW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer errR.Close()
	defer errW.Close()
	script := `read x; echo "out $x"; echo err >&2`
	p, err := Start(Spec{Argv: []string{"sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/no/such/dir", Cred: self(),
		Stdio: [3]*os.File{inR, outW, errW}, NotePrefix: "ssi exec: "})
	if err != nil {
		t.Fatal(err)
	}
	if p.Stdin != nil || p.Stdout != nil || p.Stderr != nil || p.Note != "" {
		t.Errorf("Proc has Stdin %v, Stdout %v, Stderr %v, Note %q: want none", p.Stdin, p.Stdout, p.Stderr, p.Note)
	}
	for _, f := range []*os.File{inR, outW, errW} {
		rc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		_ = rc.Control(func(fd uintptr) {
			if fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK != 0 {
				t.Errorf("the program's description of a given file: flags %#x %v, want blocking", fl, err)
			}
		})
	}
	inR.Close()
	outW.Close()
	errW.Close()
	if _, err := inW.WriteString("in\n"); err != nil {
		t.Fatal(err)
	}
	inW.Close()
	errc := make(chan string)
	go func() { b, _ := io.ReadAll(errR); errc <- string(b) }()
	out, _ := io.ReadAll(outR)
	st := p.Wait()
	errs := <-errc
	if string(out) != "out in\n" || st.Code != 0 || !strings.HasPrefix(errs, "ssi exec: /no/such/dir does not exist") || !strings.HasSuffix(errs, "\nerr\n") {
		t.Fatalf("stdout %q stderr %q status %+v", out, errs, st)
	}
}

func TestLookPath(t *testing.T) {
	for _, tc := range []struct {
		name string
		code int
		says string
	}{
		{"sh", 0, ""},
		{"/bin/sh", 0, ""},
		{"no-such-command-x", ExitNotFound, "command not found"},
		{"/no/such", ExitNotFound, "No such file"},
		{"/etc/passwd", ExitNotExecutable, "Permission denied"},
		{"/etc", ExitNotExecutable, "Is a directory"},
		{"../etc/passwd", ExitNotExecutable, "Permission denied"},
	} {
		_, err := lookPath(tc.name, "/bin", []string{"PATH=/usr/bin:/bin"})
		switch {
		case tc.code == 0 && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.code != 0 && (err == nil || err.Code != tc.code || !strings.Contains(err.Msg, tc.says)):
			t.Errorf("%s: %v, want code %d saying %q", tc.name, err, tc.code, tc.says)
		}
	}
}

func TestMissingDirFallsBackToHome(t *testing.T) {
	p, err := Start(Spec{Argv: []string{"pwd"}, Dir: "/no/such/dir", Cred: self()})
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, p.Stderr)
	out, _ := io.ReadAll(p.Stdout)
	p.Wait()
	home := passwdHome(t)
	if !strings.Contains(p.Note, "/no/such/dir does not exist") || strings.TrimSpace(string(out)) != home {
		t.Fatalf("note %q, ran in %q, want the home %q", p.Note, out, home)
	}
}

// passwdHome is the home the password database gives this process's
// user (where a program whose directory is missing runs).
func passwdHome(t *testing.T) string {
	t.Helper()
	u, err := user.LookupId(strconv.Itoa(os.Geteuid()))
	if err != nil {
		t.Skipf("this uid is not in the password database: %v", err)
	}
	if st, err := os.Stat(u.HomeDir); err != nil || !st.IsDir() {
		return "/" // as the runner does for a home that is not there
	}
	return u.HomeDir
}

// TestGate: a gated program is this binary waiting at the gate, as the
// caller, until Open; then it is the program, with its stdio, and its
// status is the program's. A program that cannot be executed at the gate
// reports it as a shell would.
func TestGate(t *testing.T) {
	p, err := Start(Spec{Argv: []string{"sh", "-c", "read x; echo out $x; exit 4"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Cred: self(), Gated: true})
	if err != nil {
		t.Fatal(err)
	}
	// Go's fork returns once exec released the parent's memory, before
	// the kernel laid out the new argv: cmdline may read empty at first.
	var cmdline []byte
	for deadline := time.Now().Add(5 * time.Second); len(cmdline) == 0 && err == nil && time.Now().Before(deadline); {
		cmdline, err = os.ReadFile("/proc/" + strconv.Itoa(p.Pid) + "/cmdline")
		if len(cmdline) == 0 {
			runtime.Gosched()
		}
	}
	if err != nil || !strings.HasPrefix(string(cmdline), gate.Name+"\x00") {
		t.Fatalf("before Open the process runs %q (%v), want the gate", cmdline, err)
	}
	p.Open()
	go func() {
		p.Stdin.Write([]byte("in\n"))
		p.CloseStdin()
	}()
	go io.Copy(io.Discard, p.Stderr)
	out, _ := io.ReadAll(p.Stdout)
	if st := p.Wait(); string(out) != "out in\n" || st.Code != 4 {
		t.Fatalf("out %q status %+v", out, st)
	}

	// Killed at the gate: never runs the program.
	p, err = Start(Spec{Argv: []string{"true"}, Dir: "/", Cred: self(), Gated: true})
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, p.Stdout)
	go io.Copy(io.Discard, p.Stderr)
	p.Kill()
	if st := p.Wait(); st.Code != 137 {
		t.Fatalf("killed at the gate: %+v", st)
	}
}

func TestGateExecFailure(t *testing.T) {
	if got := gateStatus(t, "/no/such/program"); got != ExitNotFound {
		t.Errorf("a missing program: %d, want %d", got, ExitNotFound)
	}
	if got := gateStatus(t, "/etc/passwd"); got != ExitNotExecutable {
		t.Errorf("a file that is no program: %d, want %d", got, ExitNotExecutable)
	}
}

// gateStatus runs the gate of this test binary for path, opened at once,
// and returns its exit status.
func gateStatus(t *testing.T, path string) int {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte{1})
	w.Close()
	cmd := exec.Command("/proc/self/exe")
	cmd.Args = []string{gate.Name, path, "prog"}
	cmd.ExtraFiles = []*os.File{r}
	err = cmd.Run()
	r.Close()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("gate of %s: %v", path, err)
	}
	return ee.ExitCode()
}

// TestLooksUpAsTheCaller: the directory and the program are looked up with
// the caller's identity, not root's. For a caller that may not enter a
// root-only (0700) directory, a directory or program that exists inside it
// gets the same answer as one that does not: vprocd does not tell it what
// the directory holds.
func TestLooksUpAsTheCaller(t *testing.T) {
	roottest.Need(t)
	const nobody = 65534
	if _, err := user.LookupId(strconv.Itoa(nobody)); err != nil {
		t.Skipf("uid %d is not a user here: %v", nobody, err)
	}
	base := t.TempDir()
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(base, "secret")
	if err := os.Mkdir(secret, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(secret, "dir"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(secret, "prog"), []byte("#!/bin/sh\necho ran\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	caller := Cred{UID: nobody, GID: nobody}
	home := "/"
	if u, _ := user.LookupId(strconv.Itoa(nobody)); u != nil {
		if st, err := os.Stat(u.HomeDir); err == nil && st.IsDir() {
			home = u.HomeDir
		}
	}
	// outcome is what the caller is told, with the name asked for
	// replaced by NAME.
	outcome := func(name string, s Spec) string {
		t.Helper()
		s.Cred = caller
		p, err := Start(s)
		if err != nil {
			return "refused: " + strings.ReplaceAll(err.Error(), name, "NAME")
		}
		go io.Copy(io.Discard, p.Stderr)
		out, _ := io.ReadAll(p.Stdout)
		st := p.Wait()
		return fmt.Sprintf("ran in %q, status %d, note %q", strings.TrimSpace(string(out)), st.Code, strings.ReplaceAll(p.Note, name, "NAME"))
	}
	env := []string{"PATH=/usr/bin:/bin"}
	for _, tc := range []struct {
		what        string
		exists, not string
		spec        func(name string) Spec
		want        string
	}{
		{"a directory", filepath.Join(secret, "dir"), filepath.Join(secret, "nodir"),
			func(name string) Spec { return Spec{Argv: []string{"pwd"}, Env: env, Dir: name} },
			fmt.Sprintf("ran in %q, status 0, note %q", home, "NAME does not exist on this node: running in "+home)},
		{"a program by its path", filepath.Join(secret, "prog"), filepath.Join(secret, "noprog"),
			func(name string) Spec { return Spec{Argv: []string{name}, Env: env, Dir: "/"} },
			"refused: NAME: Permission denied"},
		{"a program on PATH", "prog", "noprog",
			func(name string) Spec {
				return Spec{Argv: []string{name}, Env: []string{"PATH=" + secret + ":/usr/bin:/bin"}, Dir: "/"}
			},
			"refused: NAME: command not found"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			there, missing := outcome(tc.exists, tc.spec(tc.exists)), outcome(tc.not, tc.spec(tc.not))
			if there != missing {
				t.Errorf("uid %d tells one inside a 0700 directory of root's from a missing one:\n exists:  %s\n missing: %s", nobody, there, missing)
			}
			if there != tc.want {
				t.Errorf("exists: %s, want %s", there, tc.want)
			}
		})
	}
}
