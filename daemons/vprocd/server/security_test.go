package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/internal/roottest"
	"github.com/openssi/openssi/internal/rpc"
	"github.com/openssi/openssi/internal/rpc/rpctest"
	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// TestPeerMustBeTheOriginsVprocd: a target runs a program only for the
// vprocd of the node holding the origin number the start claims, so a
// caller's uid is believed only from that vprocd. Another node's vprocd,
// or another daemon of the origin node, is refused, and nothing runs.
func TestPeerMustBeTheOriginsVprocd(t *testing.T) {
	c := startCluster(t, 2)
	marker := filepath.Join(t.TempDir(), "ran")
	for _, tc := range []struct {
		name     string
		node     string
		services []string
		code     codes.Code
	}{
		{"the vprocd of node 3 claiming node 1", rpctest.NodeName(3), []string{ServiceName}, codes.PermissionDenied},
		{"node 1's dlmd", rpctest.NodeName(1), []string{rpc.ServiceName("dlmd")}, codes.PermissionDenied},
		{"node 1's vprocd", rpctest.NodeName(1), []string{ServiceName}, codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(marker)
			src := c.source(9, tc.node, tc.services...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			conn, err := rpc.Dial(ctx, src, c.node(2).addr, rpc.NodeIdentity(ServiceName, rpctest.NodeName(2)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			s, err := vprocpeerv1.NewVprocPeerClient(conn).Exec(ctx)
			if err != nil {
				t.Fatal(err)
			}
			start := &vprocpeerv1.Start{Origin: 1, Caller: &vprocpeerv1.Caller{Uid: uint32(os.Geteuid()), Gid: uint32(os.Getegid())},
				Request: &vprocv1.ExecRequest{Node: 2, Argv: [][]byte{[]byte("touch"), []byte(marker)}, Env: [][]byte{[]byte("PATH=/usr/bin:/bin")}}}
			if err := s.Send(&vprocpeerv1.PeerExecInput{Kind: &vprocpeerv1.PeerExecInput_Start{Start: start}}); err != nil {
				t.Fatal(err)
			}
			var last error
			for {
				m, err := s.Recv()
				if err != nil {
					last = err
					break
				}
				if m.GetExit() != nil {
					break
				}
			}
			_, ran := os.Stat(marker)
			if tc.code != codes.OK && status.Code(last) != tc.code || tc.code == codes.OK && last != nil {
				t.Fatalf("ended with %v, want %v", last, tc.code)
			}
			if (ran == nil) != (tc.code == codes.OK) {
				t.Fatalf("the program ran: %v, want %v", ran == nil, tc.code == codes.OK)
			}
		})
	}
}

// helperEnv names the variable that makes the test binary a vproc
// client (see TestMain): a JSON helperCall.
const helperEnv = "VPROCD_TEST_HELPER"

type helperCall struct {
	Socket string
	Node   int
	Args   []string
}

func TestMain(m *testing.M) {
	if v := os.Getenv(helperEnv); v != "" {
		os.Exit(helper(v))
	}
	if v := os.Getenv(signalHelperEnv); v != "" {
		os.Exit(signalHelper(v))
	}
	if os.Getenv(signalCounterEnv) != "" {
		os.Exit(signalCounter())
	}
	// As vprocd does (main.go): CI runs the tests in a PID namespace whose
	// session leader lies outside it.
	LeadSessionIfOutside()
	os.Exit(m.Run())
}

// helper runs a call and copies its output; its exit status is the
// program's.
func helper(v string) int {
	var call helperCall
	if err := json.Unmarshal([]byte(v), &call); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 100
	}
	p, err := vproc.Exec(context.Background(), call.Node, vproc.Cmd{Args: call.Args, Dir: "/", Env: []string{"PATH=/usr/bin:/bin"},
		Stdout: os.Stdout, Stderr: os.Stderr}, vproc.WithSocket(call.Socket))
	var se *vproc.StartError
	if errors.As(err, &se) {
		fmt.Println(se.Status.Reason)
		return se.Status.Code
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 101
	}
	st, err := p.Wait()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return st.Code
}

// runAs runs the test binary as a vproc client of uid 65534 with groups
// 65534 and 100, calling node 1's vprocd to run args on node.
func runAs(t *testing.T, c *testCluster, node int, args ...string) string {
	t.Helper()
	out, code := runAsUID(t, c, 65534, node, args...)
	if code != 0 {
		t.Fatalf("%q as uid 65534: exit %d\n%s", args, code, out)
	}
	return out
}

// runAsUID is runAs as uid (gid uid, groups uid and 100), returning the
// output and the exit status.
func runAsUID(t *testing.T, c *testCluster, uid uint32, node int, args ...string) (string, int) {
	t.Helper()
	// The binary must be readable by that user.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(c.dir, "helper")
	if _, err := os.Stat(bin); err != nil {
		if err := os.WriteFile(bin, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	call, _ := json.Marshal(helperCall{Socket: c.node(1).socket, Node: node, Args: args})
	cmd := exec.Command(bin)
	cmd.Env = []string{helperEnv + "=" + string(call)}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{uid, 100}}}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%q as uid %d: %v\n%s", args, uid, err, out)
	}
	return string(out), 0
}

// TestUnknownUser: a caller whose uid is no user on the target is
// refused there with one line and 125, and nothing runs.
func TestUnknownUser(t *testing.T) {
	roottest.Need(t)
	c := startCluster(t, 2)
	const uid = 4242424
	if _, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		t.Skipf("uid %d is a user here", uid)
	}
	out, code := runAsUID(t, c, uid, 2, "true")
	if code != vproc.ExitRefused || out != fmt.Sprintf("uid %d is not a user on this node\n", uid) {
		t.Fatalf("exit %d, output %q; want %d and one line", code, out, vproc.ExitRefused)
	}
}

// TestRunsAsTheCaller: a program runs with exactly its caller's uid, gid
// and groups, taken from the socket: root's vprocd never runs it as
// root for a caller that is not.
func TestRunsAsTheCaller(t *testing.T) {
	roottest.Need(t)
	c := startCluster(t, 2)
	for _, node := range []int{1, 2} {
		out := runAs(t, c, node, "sh", "-c", "id -u; id -g; id -G")
		if got := strings.Fields(out); strings.Join(got, " ") != "65534 65534 65534 100" {
			t.Errorf("on node %d the program of uid 65534 ran as %q, want uid 65534 gid 65534 groups 65534 100", node, out)
		}
	}
}
