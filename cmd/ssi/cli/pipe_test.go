package cli

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/daemons/vprocd/server"
	"github.com/openssi/openssi/internal/execwire"
	"github.com/openssi/openssi/internal/localapi"
)

// ssiMainEnv makes the test binary run ssi (its arguments after "--")
// instead of the tests: a shell pipeline runs ssi as its own process.
const ssiMainEnv = "SSI_CLI_TEST_RUN_SSI"

// With ssiMainEnv=1 the arguments after the first "--" are ssi's; with
// ssiMainEnv=2 all of them are, as ssi's own (`TEST exec -- CMD`), so that
// package early's initialiser starts the exec as in ssi.
func TestMain(m *testing.M) {
	switch os.Getenv(ssiMainEnv) {
	case "1":
		args := os.Args[1:]
		for i, a := range args {
			if a == "--" {
				args = args[i+1:]
				break
			}
		}
		os.Exit(Main(args, os.Stdout, os.Stderr))
	case "2":
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// startPassingVprocd is startVprocd with vprocd taking passed stdio and
// serving its exec socket, as the daemon does. It returns the run
// directory and how many connections its gRPC socket accepted so far.
func startPassingVprocd(t *testing.T) (string, func() int64) {
	t.Helper()
	dir := t.TempDir()
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv := server.New(server.Config{Node: 1, Log: log})
	srv.Membership(1, true)
	srv.Membership(7, false)
	ln, _, err := localapi.Listen(filepath.Join(dir, "vprocd.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingListener{Listener: ln}
	g := grpc.NewServer(grpc.Creds(localapi.FileCredentials()))
	api := server.NewAPI(srv)
	api.Register(g)
	go func() { _ = g.Serve(counted) }()
	t.Cleanup(g.Stop)
	eln, _, err := localapi.Listen(execwire.SocketPath(filepath.Join(dir, "vprocd.sock")), "")
	if err != nil {
		t.Fatal(err)
	}
	execs := server.ServeExecSocket(api, eln)
	t.Cleanup(execs.Stop)
	return dir, counted.n.Load
}

type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// TestExecInPipeline: ssi exec in a shell pipeline whose reader goes
// away (| head -1) ends as the program run locally would: the program's
// next write fails (SIGPIPE, or EPIPE when it ignores SIGPIPE), what it
// does then is its own, and the shell sees its status (128+13 for a
// death by SIGPIPE). ssi exec's stdio are pipes, which it passes to
// vprocd.
func TestExecInPipeline(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	dir, _ := startPassingVprocd(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, script := range []string{
		`$RUN yes | head -1; echo "status ${PIPESTATUS[*]}"`,
		`$RUN sh -c 'yes; echo "after $?" >&2; exit 7' | head -1; echo "status ${PIPESTATUS[*]}"`,
		`$RUN sh -c 'trap "" PIPE; yes; echo "yes $?" >&2' | head -1; echo "status ${PIPESTATUS[*]}"`,
		`set -o pipefail; $RUN yes | head -1; echo "status $?"`,
		`$RUN sh -c 'echo out; yes >&2; echo "after $?"' 2>&1 >/dev/null | head -1; echo "status ${PIPESTATUS[*]}"`,
	} {
		var got [3]string
		// Locally; ssi exec; ssi exec started early.
		for i, run := range []string{"", self + " -- --run-dir " + dir + " exec --", self + " exec --"} {
			cmd := exec.Command("bash", "-c", script)
			cmd.Env = append(os.Environ(), ssiMainEnv+"=1", "RUN="+run)
			if i == 2 {
				cmd.Env = append(os.Environ(), ssiMainEnv+"=2", "RUN="+run, "OPENSSI_CLUSTER_RUN_DIR="+dir)
			}
			var out, errs strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errs
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s (RUN=%q): %v", script, run, err)
			}
			got[i] = "stdout " + strconv.Quote(out.String()) + ", stderr " + strconv.Quote(errs.String())
		}
		if got[0] != got[1] || got[0] != got[2] {
			t.Errorf("%s\n  with ssi exec: %s\n  started early: %s\n  locally:       %s", script, got[1], got[2], got[0])
		}
	}
}

// TestExecStartedEarly: ssi exec as its own process, started by package
// early's initialiser: the program gets its stdio, environment and exit
// status, a signal ssi gets once it took the exec over is passed on, a
// refusal is ssi's one line and status, and ssi never connects to
// vprocd's gRPC socket on the way.
func TestExecStartedEarly(t *testing.T) {
	dir, grpcConns := startPassingVprocd(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ssi := func(stdin string, args ...string) *exec.Cmd {
		cmd := exec.Command(self, append([]string{"exec"}, args...)...)
		cmd.Env = append(os.Environ(), ssiMainEnv+"=2", "OPENSSI_CLUSTER_RUN_DIR="+dir)
		cmd.Stdin = strings.NewReader(stdin)
		return cmd
	}
	for _, tc := range []struct {
		stdin     string
		args      []string
		code      int
		out, errs string
	}{
		{"in\n", []string{"-e", "FOO=bar", "--", "sh", "-c", `read x; echo "$x-$FOO"; echo e >&2; exit 3`}, 3, "in-bar\n", "e\n"},
		{"", []string{"-n", "1", "-C", "/", "--", "pwd"}, 0, "/\n", ""},
		{"", []string{"--", "no-such-command-ssi-test"}, exitNotFound, "", "ssi exec: no-such-command-ssi-test: command not found\n"},
		{"", []string{"-n", "7", "--", "true"}, exitNoNode, "", "ssi exec: vproc: node 7 is DOWN\n"},
	} {
		cmd := ssi(tc.stdin, tc.args...)
		var out, errs strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errs
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || out.String() != tc.out || errs.String() != tc.errs {
			t.Errorf("ssi exec %q: exit %d stdout %q stderr %q; want %d %q %q", tc.args, code, out.String(), errs.String(), tc.code, tc.out, tc.errs)
		}
	}

	// Stdio that is not passed (regular files): streamed through ssi.
	in := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(in, []byte("from a file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	files := make([]*os.File, 3)
	for i, name := range []string{in, in + ".out", in + ".err"} {
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		files[i] = f
	}
	cmd := ssi("", "--", "sh", "-c", `cat; echo to-err >&2; exit 4`)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = files[0], files[1], files[2]
	err = cmd.Run()
	out, _ := os.ReadFile(in + ".out")
	errs, _ := os.ReadFile(in + ".err")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 4 || string(out) != "from a file\n" || string(errs) != "to-err\n" {
		t.Errorf("files as stdio: %v, stdout %q stderr %q; want exit 4 and the file's line", err, out, errs)
	}

	// SIGTERM once the program runs: passed on, the program's trap
	// answers.
	cmd = ssi("", "--", "sh", "-c", `trap 'echo got; exit 7' TERM; echo ready; while :; do sleep 0.01; done`)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("read %q: %v", buf, err)
	}
	// Ready is printed by the program while ssi may still be in its
	// initialisers: the signal is passed on all the same.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stdout)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 7 || string(rest) != "got\n" {
		t.Errorf("after SIGTERM: %v, output %q; want exit 7 and got", err, rest)
	}
	if n := grpcConns(); n != 0 {
		t.Errorf("ssi exec started early made %d connections to vprocd's gRPC socket, want 0", n)
	}
}
