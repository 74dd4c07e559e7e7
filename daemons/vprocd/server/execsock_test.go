package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/internal/execwire"
	"github.com/openssi/openssi/internal/localapi"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// TestExecOverGRPC: where vprocd has no exec socket (one older than it),
// client/vproc's execs go over the gRPC stream, passed files included.
func TestExecOverGRPC(t *testing.T) {
	c := startCluster(t, 2)
	if err := os.Remove(execwire.SocketPath(c.node(1).socket)); err != nil {
		t.Fatal(err)
	}
	for _, to := range []uint32{1, 2} {
		out, errs, st := run(t, c, 1, to, "in\n", "sh", "-c", `read x; echo "out $x"; echo err >&2; exit 3`)
		if out != "out in\n" || errs != "err\n" || st.Code != 3 {
			t.Errorf("node 1 -> %d over gRPC: stdout %q stderr %q status %+v", to, out, errs, st)
		}
	}
}

// dialExecSocket connects to node n's exec socket.
func dialExecSocket(t *testing.T, c *testCluster, n uint32) *localapi.FrameConn {
	t.Helper()
	conn, err := net.Dial("unix", execwire.SocketPath(c.node(n).socket))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return localapi.NewFrameConn(conn.(*net.UnixConn))
}

// statusOfFrame reads frames until the exec's end and returns its status
// frame's code and message (codes.OK when it ended with an Exit).
func statusOfFrame(t *testing.T, fc *localapi.FrameConn) (codes.Code, string) {
	t.Helper()
	_ = fc.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		kind, msg, _, err := fc.Read()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if kind == execwire.KindStatus {
			st := &spb.Status{}
			if err := proto.Unmarshal(msg, st); err != nil {
				t.Fatal(err)
			}
			return codes.Code(st.Code), st.Message
		}
		o := &vprocv1.ExecOutput{}
		if err := proto.Unmarshal(msg, o); err != nil {
			t.Fatal(err)
		}
		if o.GetExit() != nil {
			return codes.OK, ""
		}
	}
}

// TestExecSocketRefuses: a first frame that is not a request, or does not
// decode, or a bad request, is refused with the gRPC API's status.
func TestExecSocketRefuses(t *testing.T) {
	c := startCluster(t, 1)
	for _, tc := range []struct {
		name string
		kind byte
		msg  []byte
		want string
	}{
		{"an output first", execwire.KindOutput, nil, "the first frame must be the request"},
		{"no protobuf", execwire.KindInput, []byte{0xff, 0xff}, "the request does not decode"},
		{"no request", execwire.KindInput, mustMarshal(t, &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_StdinEof{StdinEof: true}}), "the first message must be the request"},
	} {
		fc := dialExecSocket(t, c, 1)
		if err := fc.Write(tc.kind, tc.msg, nil); err != nil {
			t.Fatal(err)
		}
		if code, msg := statusOfFrame(t, fc); code != codes.InvalidArgument || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %v %q, want InvalidArgument with %q", tc.name, code, msg, tc.want)
		}
	}
}

// TestExecSocketFilesOnlyFirst: descriptors on a frame after the request
// end the exec (its program killed), as a connection out of step.
func TestExecSocketFilesOnlyFirst(t *testing.T) {
	c := startCluster(t, 1)
	fc := dialExecSocket(t, c, 1)
	requestSleep(t, fc)
	_ = fc.Conn().SetReadDeadline(time.Now().Add(10 * time.Second))
	_, msg, _, err := fc.Read()
	if err != nil {
		t.Fatal(err)
	}
	started := &vprocv1.ExecOutput{}
	if err := proto.Unmarshal(msg, started); err != nil || started.GetStarted() == nil {
		t.Fatalf("first answer %v (%v), want started", started, err)
	}
	pid := int(started.GetStarted().Pid)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	// SIGWINCH, which sleep ignores: only the refusal of the files can
	// end it.
	sig := mustMarshal(t, &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Signal{Signal: int32(syscall.SIGWINCH)}})
	if err := fc.Write(execwire.KindInput, sig, []*os.File{r}); err != nil {
		t.Fatal(err)
	}
	waitDead(t, pid, "the program of a caller that passed files out of step")
}

// TestExecSocketStopEndsExecs: stopping the exec socket ends the execs it
// serves, a caller that does not read its output included.
func TestExecSocketStopEndsExecs(t *testing.T) {
	c := startCluster(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, pid := startSleep(t, c, ctx, 1, 1)
	done := make(chan struct{})
	go func() {
		c.node(1).execs.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return")
	}
	waitDead(t, pid, "the program of an exec of the stopped exec socket")
}

// requestSleep sends the request of a long sleep on fc.
func requestSleep(t *testing.T, fc *localapi.FrameConn) {
	t.Helper()
	req := &vprocv1.ExecInput{Kind: &vprocv1.ExecInput_Start{Start: &vprocv1.ExecRequest{
		Argv: [][]byte{[]byte("sleep"), []byte("1000")}, Env: [][]byte{[]byte("PATH=/usr/bin:/bin")}, Cwd: []byte("/")}}}
	if err := fc.Write(execwire.KindInput, mustMarshal(t, req), nil); err != nil {
		t.Fatal(err)
	}
}

func mustMarshal(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// zeros is an endless stdin that counts what was read of it.
type zeros struct{ n atomic.Int64 }

func (z *zeros) Read(b []byte) (int, error) {
	clear(b)
	z.n.Add(int64(len(b)))
	return len(b), nil
}

// TestCallerGoneWhileStdinBacksUp: a program that does not read its stdin
// while its caller sends more than the pipes hold stops its exec's inputs
// (vprocd's reader of the exec socket, the peer stream's window); the
// caller's going away still ends the exec and kills the program, over
// the exec socket and over gRPC, here and on another node (both ran on
// before).
func TestCallerGoneWhileStdinBacksUp(t *testing.T) {
	for _, overGRPC := range []bool{false, true} {
		c := startCluster(t, 2)
		if overGRPC {
			if err := os.Remove(execwire.SocketPath(c.node(1).socket)); err != nil {
				t.Fatal(err)
			}
		}
		for _, to := range []uint32{1, 2} {
			ctx, cancel := context.WithCancel(context.Background())
			in := &zeros{}
			p, err := c.client(1).Exec(ctx, int(to), vproc.Cmd{Args: []string{"sleep", "1000"}, Stdin: in})
			if err != nil {
				t.Fatal(err)
			}
			go io.Copy(io.Discard, p.Stdout)
			go io.Copy(io.Discard, p.Stderr)
			// Until the stdin stalls: the pipe (1 MiB), the queues and
			// the sockets' buffers full.
			for last := int64(-1); in.n.Load() != last; time.Sleep(200 * time.Millisecond) {
				last = in.n.Load()
			}
			cancel()
			waitDead(t, p.Pid, fmt.Sprintf("node 1 -> %d (gRPC %v): the program of a caller gone while its stdin backed up", to, overGRPC))
		}
	}
}

// TestSignalBesideBackedUpStdin: the caller's signal reaches a program
// that does not read its stdin while the caller keeps the passed stdin
// full: on another node the relayed stdin fills the peer stream's window,
// and a signal behind it in the stream never came (Ctrl-C of such an
// ssi exec did nothing); it goes beside the stream now. Here the program
// has the caller's pipe itself. Over the exec socket and over gRPC.
func TestSignalBesideBackedUpStdin(t *testing.T) {
	for _, overGRPC := range []bool{false, true} {
		c := startCluster(t, 2)
		if overGRPC {
			if err := os.Remove(execwire.SocketPath(c.node(1).socket)); err != nil {
				t.Fatal(err)
			}
		}
		for _, to := range []uint32{2, 1} {
			what := fmt.Sprintf("node 1 -> %d (gRPC %v)", to, overGRPC)
			inR, inW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			outR, outW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			p, err := c.client(1).Exec(context.Background(), int(to), vproc.Cmd{Args: []string{"sleep", "1000"},
				Stdin: inR, Stdout: outW, Stderr: outW, PassFiles: true})
			if err != nil {
				t.Fatal(err)
			}
			go io.Copy(io.Discard, outR)
			in := &zeros{}
			go io.Copy(inW, in)
			// Until the stdin stalls: the program's pipe, vprocd's
			// queues and the stream's window full.
			for last := int64(-1); in.n.Load() != last; time.Sleep(200 * time.Millisecond) {
				last = in.n.Load()
			}
			// SIGALRM is no signal a caller may send (CheckInput): it is
			// dropped beside the stream as in it, and SIGTERM, after it,
			// ends the program.
			for _, sig := range []syscall.Signal{syscall.SIGALRM, syscall.SIGTERM} {
				if err := p.Signal(sig); err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			}
			ended := make(chan vproc.ExitStatus, 1)
			go func() {
				st, _ := p.Wait()
				ended <- st
			}()
			select {
			case st := <-ended:
				if st.Signal != int(syscall.SIGTERM) {
					t.Errorf("%s: the program ended %+v, want by SIGTERM", what, st)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("%s: the program still runs 10 s after SIGTERM behind a full stdin", what)
				_ = syscall.Kill(p.Pid, syscall.SIGKILL)
				<-ended
			}
			for _, f := range []*os.File{inR, inW, outR, outW} {
				f.Close()
			}
		}
	}
}

// TestExecSocketBadLaterFrame: a frame after the request that is no
// input ends the exec, the caller told why.
func TestExecSocketBadLaterFrame(t *testing.T) {
	c := startCluster(t, 1)
	fc := dialExecSocket(t, c, 1)
	requestSleep(t, fc)
	if err := fc.Write(execwire.KindOutput, nil, nil); err != nil {
		t.Fatal(err)
	}
	if code, msg := statusOfFrame(t, fc); code != codes.InvalidArgument || !strings.Contains(msg, "not an input") {
		t.Errorf("%v %q, want InvalidArgument: not an input", code, msg)
	}
}
