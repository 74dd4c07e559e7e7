package cli

import (
	"bytes"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/daemons/vprocd/server"
	"github.com/openssi/openssi/internal/localapi"
)

// startVprocd serves a one-node vprocd (node 1) on <dir>/vprocd.sock.
func startVprocd(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv := server.New(server.Config{Node: 1, Log: log})
	srv.Membership(1, true)
	srv.Membership(2, false)
	ln, _, err := localapi.Listen(filepath.Join(dir, "vprocd.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(localapi.Credentials()))
	server.NewAPI(srv).Register(g)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return dir
}

func TestExecCommand(t *testing.T) {
	dir := startVprocd(t)
	home := passwdHome(t)
	for _, tc := range []struct {
		args      []string
		code      int
		out, errs string
	}{
		{[]string{"--", "sh", "-c", "echo hi; echo oops >&2; exit 3"}, 3, "hi\n", "oops\n"},
		{[]string{"-n", "1", "-e", "FOO=bar", "-e", "FOO=baz", "--", "sh", "-c", `echo "$FOO"`}, 0, "baz\n", ""},
		{[]string{"-C", "/", "--", "pwd"}, 0, "/\n", ""},
		{[]string{"-C", "/no/such/dir", "--", "pwd"}, 0, home + "\n", "ssi exec: /no/such/dir does not exist on this node: running in " + home + "\n"},
		{[]string{"--", "sh", "-c", "kill -TERM $$"}, 128 + 15, "", ""},
		{[]string{"--", "no-such-command-ssi-test"}, exitNotFound, "", "ssi exec: no-such-command-ssi-test: command not found\n"},
		{[]string{"--", "/etc/passwd"}, exitNotExecutable, "", "ssi exec: /etc/passwd: Permission denied\n"},
		{[]string{"-n", "2", "--", "true"}, exitNoNode, "", "ssi exec: vproc: node 2 is DOWN\n"},
		{[]string{"-n", "7", "--", "true"}, exitNoNode, "", "ssi exec: vproc: node 7 is not a member of the cluster\n"},
	} {
		var out, errs bytes.Buffer
		code := Main(append([]string{"--run-dir", dir, "exec"}, tc.args...), &out, &errs)
		if code != tc.code || out.String() != tc.out || errs.String() != tc.errs {
			t.Errorf("ssi exec %q: exit %d stdout %q stderr %q; want %d %q %q", tc.args, code, out.String(), errs.String(), tc.code, tc.out, tc.errs)
		}
	}
}

func TestExecDetach(t *testing.T) {
	dir := startVprocd(t)
	var out, errs bytes.Buffer
	if code := Main([]string{"--run-dir", dir, "exec", "--detach", "--", "sleep", "1000"}, &out, &errs); code != 0 {
		t.Fatalf("exit %d: %s", code, errs.String())
	}
	cpid, err := strconv.ParseInt(strings.TrimSpace(out.String()), 10, 64)
	if err != nil || cpid>>22 != 1 {
		t.Fatalf("printed %q, want a cpid of node 1", out.String())
	}
	pid := int(cpid & (1<<22 - 1))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("the detached program (pid %d) is not running: %v", pid, err)
	}
}

func TestExecUsageAndNoVprocd(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"exec", "true"}, exitUsage, "usage: ssi exec"},
		{[]string{"exec", "-e", "NOEQUALS", "--", "true"}, exitUsage, `-e "NOEQUALS": want K=V`},
		{[]string{"exec", "-n", "-1", "--", "true"}, exitUsage, "want a node number"},
		{[]string{"exec", "--auto", "-n", "2", "--", "true"}, exitUsage, "-n and --auto: give one"},
		{[]string{"exec", "--", "true"}, exitNoVprocd, "vprocd is not running on this node"},
	} {
		var out, errs bytes.Buffer
		code := Main(append([]string{"--run-dir", t.TempDir()}, tc.args...), &out, &errs)
		if code != tc.code || !strings.Contains(errs.String(), tc.want) || strings.Count(errs.String(), "\n") != 1 {
			t.Errorf("%q: exit %d stderr %q, want %d and one line with %q", tc.args, code, errs.String(), tc.code, tc.want)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	got, err := mergeEnv([]string{"A=1", "B=2"}, []string{"B=3", "C=", "D=x=y"})
	if err != nil || strings.Join(got, " ") != "A=1 B=3 C= D=x=y" {
		t.Fatalf("%q %v", got, err)
	}
	for _, bad := range []string{"X", "=1", "A=\x00"} {
		if _, err := mergeEnv(nil, []string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
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
