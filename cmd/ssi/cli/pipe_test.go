package cli

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/daemons/vprocd/server"
	"github.com/openssi/openssi/internal/localapi"
)

// ssiMainEnv makes the test binary run ssi (its arguments after "--")
// instead of the tests: a shell pipeline runs ssi as its own process.
const ssiMainEnv = "SSI_CLI_TEST_RUN_SSI"

func TestMain(m *testing.M) {
	if os.Getenv(ssiMainEnv) == "1" {
		args := os.Args[1:]
		for i, a := range args {
			if a == "--" {
				args = args[i+1:]
				break
			}
		}
		os.Exit(Main(args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// startPassingVprocd is startVprocd with vprocd taking passed stdio, as
// the daemon does.
func startPassingVprocd(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv := server.New(server.Config{Node: 1, Log: log})
	srv.Membership(1, true)
	ln, _, err := localapi.Listen(filepath.Join(dir, "vprocd.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(localapi.FileCredentials()))
	server.NewAPI(srv).Register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return dir
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
	dir := startPassingVprocd(t)
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
		var got [2]string
		for i, run := range []string{"", self + " -- --run-dir " + dir + " exec --"} {
			cmd := exec.Command("bash", "-c", script)
			cmd.Env = append(os.Environ(), ssiMainEnv+"=1", "RUN="+run)
			var out, errs strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errs
			if err := cmd.Run(); err != nil {
				t.Fatalf("%s (RUN=%q): %v", script, run, err)
			}
			got[i] = "stdout " + strconv.Quote(out.String()) + ", stderr " + strconv.Quote(errs.String())
		}
		if got[0] != got[1] {
			t.Errorf("%s\n  with ssi exec: %s\n  locally:       %s", script, got[1], got[0])
		}
	}
}
