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
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/vprocd/stdioflow"
	"github.com/openssi/openssi/internal/localapi"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// pipes returns n pipes, closed at the test's end: blocking ones, as a
// shell makes (os.Pipe's are non-blocking).
func pipes(t *testing.T, n int) (rs, ws []*os.File) {
	t.Helper()
	for range n {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			t.Fatal(err)
		}
		r, w := os.NewFile(uintptr(p[0]), "pipe"), os.NewFile(uintptr(p[1]), "pipe")
		t.Cleanup(func() { r.Close(); w.Close() })
		rs, ws = append(rs, r), append(ws, w)
	}
	return rs, ws
}

// TestPassedStdio runs a program with the caller's stdin, stdout and
// stderr passed to vprocd (as ssi exec passes a pipe's): the bytes go to
// and from the caller's files, the status comes back, locally and on
// another node.
func TestPassedStdio(t *testing.T) {
	c := startCluster(t, 2)
	for _, to := range []int{1, 2} {
		rs, ws := pipes(t, 3)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p, err := c.client(1).Exec(ctx, to, vproc.Cmd{Args: []string{"sh", "-c", `read x; echo "out $x"; echo err >&2; exit 3`},
			Stdin: rs[0], Stdout: ws[1], Stderr: ws[2], PassFiles: true})
		if err != nil {
			t.Fatal(err)
		}
		if p.Stdin != nil {
			t.Error("a passed stdin has a pipe in the Process too")
		}
		// The caller's copies: vprocd has its own.
		rs[0].Close()
		ws[1].Close()
		ws[2].Close()
		if _, err := ws[0].WriteString("in\n"); err != nil {
			t.Fatal(err)
		}
		ws[0].Close()
		var out, errs []byte
		done := make(chan struct{})
		go func() { errs, _ = io.ReadAll(rs[2]); close(done) }()
		out, _ = io.ReadAll(rs[1])
		<-done
		st, err := p.Wait()
		cancel()
		if err != nil || st.Code != 3 || string(out) != "out in\n" || string(errs) != "err\n" {
			t.Errorf("node 1 -> %d: stdout %q stderr %q status %+v %v, want \"out in\\n\" \"err\\n\" 3", to, out, errs, st, err)
		}
	}
}

// TestPassedStdioStream: 64 MiB through a remote cat with stdin and
// stdout passed comes back unchanged.
func TestPassedStdioStream(t *testing.T) {
	c := startCluster(t, 2)
	rs, ws := pipes(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := c.client(1).Exec(ctx, 2, vproc.Cmd{Args: []string{"cat"}, Stdin: rs[0], Stdout: ws[1], Stderr: io.Discard, PassFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	rs[0].Close()
	ws[1].Close()
	const size = 64 << 20
	in := sha256.New()
	go func() {
		block := make([]byte, 1<<20)
		for i := range size / len(block) {
			for j := range block {
				block[j] = byte(i*7 + j*13 + j>>8)
			}
			in.Write(block)
			if _, err := ws[0].Write(block); err != nil {
				t.Error(err)
				break
			}
		}
		ws[0].Close()
	}()
	out := sha256.New()
	n, err := io.Copy(out, rs[1])
	if err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(); err != nil || st.Code != 0 {
		t.Fatalf("cat: %+v %v", st, err)
	}
	if n != size || !bytes.Equal(in.Sum(nil), out.Sum(nil)) {
		t.Fatalf("got %d bytes back of %d, sha256 %x, sent %x", n, size, out.Sum(nil), in.Sum(nil))
	}
}

// TestPassedStdinLetGo: a program that ends while its passed stdin is
// still open (nothing written, not closed) ends the exec, and vprocd lets
// go of the stdin: its writer then has no reader left.
func TestPassedStdinLetGo(t *testing.T) {
	for _, reopen := range []bool{true, false} {
		t.Run(fmt.Sprintf("reopened %v", reopen), func(t *testing.T) {
			defer func(was bool) { reopenPipes = was }(reopenPipes)
			reopenPipes = reopen
			stdinLetGo(t)
		})
	}
}

// stdinLetGo is TestPassedStdinLetGo with the pipe reopened or not (a
// vprocd without the rights to: the caller's own description, waited
// for with poll).
func stdinLetGo(t *testing.T) {
	c := startCluster(t, 2)
	rs, ws := pipes(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.client(1).Exec(ctx, 2, vproc.Cmd{Args: []string{"sh", "-c", `trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done`},
		Stdin: rs[0], Stdout: ws[1], Stderr: io.Discard, PassFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	rs[0].Close()
	ws[1].Close()
	if line, err := bufio.NewReader(rs[1]).ReadString('\n'); line != "ready\n" {
		t.Fatalf("read %q %v", line, err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(); err != nil || st.Code != 42 {
		t.Fatalf("after SIGTERM: %+v %v, want 42", st, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		_, err := ws[0].Write([]byte("x"))
		if errors.Is(err, syscall.EPIPE) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("writing to the stdin after the exec: %v, want EPIPE (vprocd still holds it)", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPassedStdioMissing: a request that says files were passed when none
// came is refused, and nothing runs.
func TestPassedStdioMissing(t *testing.T) {
	c := startCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := localapi.Dial(ctx, c.node(1).socket, stdioflow.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := vprocv1.NewVprocClient(conn).Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req := &vprocv1.ExecRequest{Argv: [][]byte{[]byte("touch"), []byte(t.TempDir() + "/ran")}, PassedStdio: passedStdin | passedStdout}
	if err := stream.Send(&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Start{Start: req}}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want InvalidArgument", err)
	}
}

// TestPassedOutputLetGo: a caller gone while its program fills a passed
// stdout nobody reads leaves no writer of vprocd's blocked on it.
func TestPassedOutputLetGo(t *testing.T) {
	c := startCluster(t, 2)
	rs, ws := pipes(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := c.client(1)
	p, err := cl.Exec(ctx, 2, vproc.Cmd{Args: []string{"yes"}, Stdin: bytes.NewReader(nil), Stdout: ws[0], Stderr: io.Discard, PassFiles: true})
	if err != nil {
		t.Fatal(err)
	}
	ws[0].Close()
	// The pipe fills up (nobody reads it) and vprocd's write waits.
	time.Sleep(200 * time.Millisecond)
	cancel()
	if st, _ := p.Wait(); st.Code == 0 {
		t.Fatalf("yes ended by itself: %+v", st)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		pfd := []unix.PollFd{{Fd: int32(fdOf(rs[0])), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, 100); err == nil && pfd[0].Revents&unix.POLLHUP != 0 {
			return // no writer left
		}
		if time.Now().After(deadline) {
			t.Fatal("the stdout still has a writer after the caller went: vprocd's write is stuck")
		}
	}
}

// TestPassedKinds: what the caller's vprocd takes as passed stdio. A
// socket, a device or a file open the wrong way is refused.
func TestPassedKinds(t *testing.T) {
	c := startCluster(t, 1)
	dir := t.TempDir()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	sock := os.NewFile(uintptr(sp[0]), "socket")
	defer sock.Close()
	defer unix.Close(sp[1])
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	file, err := os.Create(dir + "/out")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	for _, tc := range []struct {
		name string
		f    *os.File
		bad  string
	}{
		{"a pipe", pw, ""},
		// vprocd is root: its reads and writes on a regular file would
		// be root's (a /proc file, quotas, RLIMIT_FSIZE).
		{"a regular file", file, "not a pipe"},
		{"a socket", sock, "not a pipe"},
		{"a device", null, "not a pipe"},
		{"a pipe open for reading only", pr, "not open for its direction"},
	} {
		got := execPassing(t, c, []*os.File{tc.f}, &vprocv1.ExecRequest{Argv: [][]byte{[]byte("echo"), []byte("hi")}, PassedStdio: passedStdout})
		switch {
		case tc.bad == "" && got != nil:
			t.Errorf("%s: %v, want it taken", tc.name, got)
		case tc.bad != "" && (status.Code(got) != codes.InvalidArgument || !strings.Contains(got.Error(), tc.bad)):
			t.Errorf("%s: %v, want InvalidArgument %q", tc.name, got, tc.bad)
		}
	}
	pw.Close()
	if b, err := io.ReadAll(pr); err != nil || string(b) != "hi\n" {
		t.Errorf("the pipe carried %q (%v), want \"hi\\n\"", b, err)
	}
	if b, err := os.ReadFile(dir + "/out"); err != nil || len(b) != 0 {
		t.Errorf("the regular file holds %q (%v), want nothing", b, err)
	}
}

// execPassing passes files on a new connection, sends req and returns
// the stream's error (nil once the program's exit came).
func execPassing(t *testing.T, c *testCluster, files []*os.File, req *vprocv1.ExecRequest) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, passer, err := localapi.DialPassing(ctx, c.node(1).socket, stdioflow.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return execOn(ctx, t, vprocv1.NewVprocClient(conn), passer, files, req)
}

func execOn(ctx context.Context, t *testing.T, api vprocv1.VprocClient, passer *localapi.Passer, files []*os.File, req *vprocv1.ExecRequest) error {
	t.Helper()
	stream, err := api.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := passer.Pass(files); err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Start{Start: req}}); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return err
		}
		if st := m.GetStarted(); st != nil && st.PassedStdio != req.PassedStdio {
			// The client streams what vprocd does not say it took.
			t.Errorf("Started says passed_stdio %d were taken, want %d", st.PassedStdio, req.PassedStdio)
		}
		if m.GetExit() != nil {
			return nil
		}
	}
}

// TestPassedRefusedTaken: the files passed with a request vprocd refuses
// are taken and closed with it; the connection's next exec must not find
// them (its output would go to the refused request's stdout).
func TestPassedRefusedTaken(t *testing.T) {
	c := startCluster(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, passer, err := localapi.DialPassing(ctx, c.node(1).socket, stdioflow.DialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	api := vprocv1.NewVprocClient(conn)
	r1, w1, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, w2, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	bad := &vprocv1.ExecRequest{Argv: [][]byte{[]byte("echo"), []byte("first")}, Env: [][]byte{[]byte("NO_EQUALS_SIGN")}, PassedStdio: passedStdout}
	if err := execOn(ctx, t, api, passer, []*os.File{w1}, bad); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a request with a bad environment: %v, want InvalidArgument", err)
	}
	good := &vprocv1.ExecRequest{Argv: [][]byte{[]byte("echo"), []byte("second")}, PassedStdio: passedStdout}
	if err := execOn(ctx, t, api, passer, []*os.File{w2}, good); err != nil {
		t.Fatalf("the next exec on the connection: %v", err)
	}
	w1.Close()
	w2.Close()
	if b, err := io.ReadAll(r2); err != nil || string(b) != "second\n" {
		t.Errorf("the second exec's stdout carried %q (%v), want \"second\\n\"", b, err)
	}
	if b, err := io.ReadAll(r1); err != nil || len(b) != 0 {
		t.Errorf("the refused exec's stdout carried %q (%v), want nothing", b, err)
	}
}

// TestPassedOutputBroken: a passed stdout or stderr whose reader went
// away is broken for the program as it is for a local one in a shell
// pipeline (`ssi exec -- yes | head -1`): its next write there fails with
// EPIPE (SIGPIPE), what it does then is its own, and the caller gets the
// status it ended with. The program is not killed: a shell's next
// command runs, a program that ignores SIGPIPE sees EPIPE. On this node
// the program writes the caller's pipe itself, or (a pipe vprocd may not
// reopen) through vprocd as for another node.
func TestPassedOutputBroken(t *testing.T) {
	for _, reopen := range []bool{true, false} {
		t.Run(fmt.Sprintf("reopened %v", reopen), func(t *testing.T) {
			defer func(was bool) { reopenPipes = was }(reopenPipes)
			reopenPipes = reopen
			outputBroken(t)
		})
	}
}

func outputBroken(t *testing.T) {
	c := startCluster(t, 2)
	for _, tc := range []struct {
		name   string
		argv   []string
		stderr bool // the broken output is stderr
		code   int
		signal int
		errs   string // the start of what comes on the other output
	}{
		{"yes", []string{"yes"}, false, 141, int(syscall.SIGPIPE), ""},
		{"a shell goes on", []string{"sh", "-c", `yes; echo "after $?" >&2; exit 7`}, false, 7, 0, "after 141\n"},
		{"SIGPIPE ignored", []string{"sh", "-c", `trap '' PIPE; yes; echo "yes $?" >&2`}, false, 0, 0, "yes: standard output: Broken pipe\nyes 1\n"},
		{"stderr", []string{"sh", "-c", `yes >&2; echo "after $?"`}, true, 0, 0, "after 141\n"},
	} {
		for _, to := range []int{1, 2} {
			rs, ws := pipes(t, 2)
			broken, other := 0, 1
			if tc.stderr {
				broken, other = 1, 0
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			p, err := c.client(1).Exec(ctx, to, vproc.Cmd{Args: tc.argv, Stdin: bytes.NewReader(nil), Stdout: ws[0], Stderr: ws[1], PassFiles: true})
			if err != nil {
				t.Fatal(err)
			}
			ws[0].Close()
			ws[1].Close()
			if line, err := bufio.NewReader(rs[broken]).ReadString('\n'); line != "y\n" {
				t.Fatalf("%s, node 1 -> %d: read %q %v", tc.name, to, line, err)
			}
			rs[broken].Close() // as head -1 does
			rest, _ := io.ReadAll(rs[other])
			st, err := p.Wait()
			cancel()
			if err != nil || st.Code != tc.code || st.Signal != tc.signal || string(rest) != tc.errs {
				t.Errorf("%s, node 1 -> %d: %+v %v, other output %q; want %d (signal %d), %q", tc.name, to, st, err, rest, tc.code, tc.signal, tc.errs)
			}
		}
	}
}

// TestPassedOutputBrokenStdinFull: a program that does not read its
// stdin, whose stdin the caller keeps full, gets the broken output all
// the same (its close does not wait behind the stdin), else it is ended
// as a caller gone with the status of a death by SIGPIPE: it never runs
// on for ever writing to nobody.
func TestPassedOutputBrokenStdinFull(t *testing.T) {
	for _, reopen := range []bool{true, false} {
		t.Run(fmt.Sprintf("reopened %v", reopen), func(t *testing.T) {
			defer func(was bool) { reopenPipes = was }(reopenPipes)
			reopenPipes = reopen
			outputBrokenStdinFull(t)
		})
	}
}

func outputBrokenStdinFull(t *testing.T) {
	// The remote program's origin link breaks (its CallerGone waits
	// behind the stdin too): it is killed after OriginGrace.
	c := startClusterWith(t, 2, Config{OriginGrace: 2 * time.Second})
	for _, to := range []int{1, 2} {
		rs, ws := pipes(t, 2)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p, err := c.client(1).Exec(ctx, to, vproc.Cmd{Args: []string{"yes"}, Stdin: rs[0], Stdout: ws[1], Stderr: io.Discard, PassFiles: true})
		if err != nil {
			t.Fatal(err)
		}
		rs[0].Close()
		ws[1].Close()
		if line, err := bufio.NewReader(rs[1]).ReadString('\n'); line != "y\n" {
			t.Fatalf("node 1 -> %d: read %q %v", to, line, err)
		}
		fillStdin(t, ws[0])
		rs[1].Close()
		st, err := p.Wait()
		cancel()
		ws[0].Close()
		if err != nil || st.Code != 141 || st.Signal != int(syscall.SIGPIPE) {
			t.Errorf("node 1 -> %d: %+v %v, want 141 (SIGPIPE)", to, st, err)
		}
		for deadline := time.Now().Add(10 * time.Second); alive(p.Pid); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("node 1 -> %d: yes (pid %d) still runs", to, p.Pid)
			}
		}
	}
}

// fillStdin writes to w until nobody reads it any more: the writes
// would block for a while (vprocd's stdin queue and the program's pipe
// are full, and the stream's window).
func fillStdin(t *testing.T, w *os.File) {
	t.Helper()
	fd := fdOf(w)
	if err := unix.SetNonblock(fd, true); err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 1<<16)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		_, err := unix.Write(fd, block)
		if err == nil {
			continue
		}
		if !errors.Is(err, unix.EAGAIN) {
			t.Fatalf("writing the stdin: %v", err)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		if n, _ := unix.Poll(pfd, 300); n == 0 {
			return // not read for 300 ms
		}
	}
	t.Fatal("the stdin is still read after 20 s")
}

// TestPassedBrokenSlack: output that still comes for a broken output
// past brokenSlack ends the exec (the context is cancelled) and the
// caller's status is a death by SIGPIPE.
func TestPassedBrokenSlack(t *testing.T) {
	sent := &sentStream{}
	cancelled := false
	p := &passedStream{Vproc_ExecServer: sent, mask: passedStdout, ctx: context.Background(), stop: make(chan struct{}),
		closed: make(chan uint32, 2), cancel: func() { cancelled = true }, killed: make(chan struct{}), stdout: os.Stdout,
		writes: make(chan outWrite)} // relayed; nothing written once broken
	p.broken.Store(passedStdout)
	chunk := &vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Stdout{Stdout: make([]byte, stdioflow.Chunk)}}
	for p.dropped <= brokenSlack {
		if cancelled || len(sent.m) > 0 {
			t.Fatalf("cancelled (%v) or sent %d messages after %d bytes dropped, slack %d", cancelled, len(sent.m), p.dropped, brokenSlack)
		}
		if err := p.Send(chunk); err != nil {
			t.Fatal(err)
		}
	}
	if !cancelled {
		t.Fatalf("%d bytes dropped: not cancelled", p.dropped)
	}
	if err := p.Send(exitOf(0, 0, "")); err != nil {
		t.Fatal(err)
	}
	p.endBroken()
	if len(sent.m) != 1 || sent.m[0].GetExit().GetCode() != 141 || sent.m[0].GetExit().GetSignal() != int32(syscall.SIGPIPE) {
		t.Fatalf("sent %v, want one exit 141 (SIGPIPE)", sent.m)
	}
}

// sentStream records what is sent on it.
type sentStream struct {
	vprocv1.Vproc_ExecServer
	m []*vprocv1.ExecOutput
}

func (s *sentStream) Send(m *vprocv1.ExecOutput) error {
	s.m = append(s.m, m)
	return nil
}

// TestPassedPathOnly: a descriptor opened with O_PATH grants no access to
// its file (its access mode reads as O_RDONLY), and vprocd, as root, would
// reopen it through /proc with its own rights: a caller could read a FIFO
// it may not open, or any file through one. Such a descriptor is refused.
func TestPassedPathOnly(t *testing.T) {
	dir := t.TempDir()
	fifo := dir + "/fifo"
	if err := unix.Mkfifo(fifo, 0o000); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(fifo, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), fifo)
	defer f.Close()
	for _, write := range []bool{false, true} {
		g, _, err := ownDescription(f, write)
		if err == nil {
			if g != f {
				g.Close()
			}
			t.Errorf("an O_PATH descriptor of a FIFO (write %v) was taken, want it refused", write)
		}
	}
}

// TestPassedNote: the note of a directory missing on the node is the
// first line of a passed stderr, before the program's own, on this node
// (where the program writes the caller's pipe itself) and another.
func TestPassedNote(t *testing.T) {
	c := startCluster(t, 2)
	for _, to := range []int{1, 2} {
		rs, ws := pipes(t, 2)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		p, err := c.client(1).Exec(ctx, to, vproc.Cmd{Args: []string{"sh", "-c", "echo err >&2; echo out"}, Dir: "/no/such/dir",
			Stdin: bytes.NewReader(nil), Stdout: ws[0], Stderr: ws[1], PassFiles: true})
		if err != nil {
			t.Fatal(err)
		}
		ws[0].Close()
		ws[1].Close()
		errc := make(chan []byte)
		go func() { b, _ := io.ReadAll(rs[1]); errc <- b }()
		out, _ := io.ReadAll(rs[0])
		errs := string(<-errc)
		st, err := p.Wait()
		cancel()
		if err != nil || st.Code != 0 || string(out) != "out\n" || !strings.HasPrefix(errs, "ssi exec: /no/such/dir does not exist on this node: running in ") || !strings.HasSuffix(errs, "\nerr\n") {
			t.Errorf("node 1 -> %d: stdout %q stderr %q status %+v %v", to, out, errs, st, err)
		}
	}
}

// TestPassedBrokenGrace: output that still comes for a broken output
// brokenGrace after the break (the program's end was never closed: an
// older target, a feed stuck on a full stdin) ends the exec, however
// little it is; before that it is dropped.
func TestPassedBrokenGrace(t *testing.T) {
	now := time.Unix(1000, 0)
	cancelled := false
	p := &passedStream{Vproc_ExecServer: &sentStream{}, mask: passedStdout, ctx: context.Background(), stop: make(chan struct{}),
		closed: make(chan uint32, 2), cancel: func() { cancelled = true }, killed: make(chan struct{}), stdout: os.Stdout,
		writes: make(chan outWrite), now: func() time.Time { return now }}
	p.broken.Store(passedStdout)
	p.brokenAt.Store(now.UnixNano())
	line := &vprocv1.ExecOutput{Kind: &vprocv1.ExecOutput_Stdout{Stdout: []byte("y\n")}}
	for _, c := range []struct {
		after time.Duration
		want  bool
	}{{0, false}, {brokenGrace / 2, false}, {brokenGrace, false}, {brokenGrace + time.Millisecond, true}} {
		now = time.Unix(1000, 0).Add(c.after)
		if err := p.Send(line); err != nil {
			t.Fatal(err)
		}
		if cancelled != c.want {
			t.Fatalf("a line %s after the break: cancelled %v, want %v", c.after, cancelled, c.want)
		}
	}
}

// TestPassedSlowWriterStdinFull: a slow writer whose passed stdout broke
// while the caller keeps its stdin full (`cat big | ssi exec slowprog |
// head -1`), on this node (relayed, not reopened, its feed stuck on the
// stdin) and on another: it ends, as its next write would end it in a
// local pipeline, instead of running for ever.
func TestPassedSlowWriterStdinFull(t *testing.T) {
	for _, reopen := range []bool{true, false} {
		t.Run(fmt.Sprintf("reopened=%v", reopen), func(t *testing.T) {
			defer func(was bool) { reopenPipes = was }(reopenPipes)
			reopenPipes = reopen
			c := startClusterWith(t, 2, Config{OriginGrace: 2 * time.Second})
			for _, to := range []int{1, 2} {
				rs, ws := pipes(t, 2)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				p, err := c.client(1).Exec(ctx, to, vproc.Cmd{Args: []string{"sh", "-c", "while :; do echo y; sleep 0.1; done"}, Stdin: rs[0], Stdout: ws[1], Stderr: io.Discard, PassFiles: true})
				if err != nil {
					t.Fatal(err)
				}
				rs[0].Close()
				ws[1].Close()
				if line, err := bufio.NewReader(rs[1]).ReadString('\n'); line != "y\n" {
					t.Fatalf("node 1 -> %d: read %q %v", to, line, err)
				}
				fillStdin(t, ws[0])
				rs[1].Close()
				done := make(chan struct{})
				go func() { _, _ = p.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(20 * time.Second):
					t.Errorf("node 1 -> %d: the exec still runs 20 s after its stdout broke", to)
				}
				cancel()
				ws[0].Close()
				<-done
			}
		})
	}
}
