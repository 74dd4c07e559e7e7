package cli

import (
	"bytes"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/client/initnode"
	ifserver "github.com/openssi/openssi/daemons/initfailover/server"
	"github.com/openssi/openssi/daemons/initfailover/systemdfake"
	"github.com/openssi/openssi/internal/localapi"
)

func TestRenderNodesMarksInit(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	v := cluster.View{Epoch: 3, ThisNode: 1, Quorum: true, Nodes: []cluster.Node{
		{Number: 1, Name: "node1", Address: "10.0.0.1", State: cluster.Up, Since: now.Add(-time.Minute)},
		{Number: 2, Name: "node2", Address: "10.0.0.2", State: cluster.Up, Since: now.Add(-time.Minute)},
	}}
	for _, tc := range []struct {
		init int
		want string
	}{
		{2, `NODE  NAME   ADDRESS   STATE  SINCE   SKEW
1*    node1  10.0.0.1  UP     1m ago  -
2+    node2  10.0.0.2  UP     1m ago  -
epoch 3; * is this node; + is the init node
`},
		{1, `NODE  NAME   ADDRESS   STATE  SINCE   SKEW
1*+   node1  10.0.0.1  UP     1m ago  -
2     node2  10.0.0.2  UP     1m ago  -
epoch 3; * is this node; + is the init node
`},
	} {
		var b bytes.Buffer
		renderNodes(&b, v, now, tc.init)
		if b.String() != tc.want {
			t.Errorf("init %d: got:\n%s\nwant:\n%s", tc.init, b.String(), tc.want)
		}
	}
}

func TestRenderUnits(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	renderUnits(&b, "web.service", []initnode.Unit{
		{Node: 1, LoadState: "loaded", ActiveState: "active", SubState: "running", Since: now.Add(-5 * time.Second), MainCPID: 4194404},
		{Node: 2, LoadState: "loaded", ActiveState: "inactive", SubState: "dead"},
		{Node: 3, Err: "unit web.service not found"},
	}, now)
	want := `NODE  UNIT         LOAD    ACTIVE            SINCE   MAIN-CPID
1     web.service  loaded  active (running)  5s ago  4194404
2     web.service  loaded  inactive (dead)   -       -
3     web.service  error: unit web.service not found
`
	if got := b.String(); !sameLines(got, want) {
		t.Errorf("got:\n%q\nwant:\n%q", got, want)
	}
}

// sameLines compares two tables ignoring trailing blanks.
func sameLines(a, b string) bool {
	la, lb := strings.Split(strings.TrimSpace(a), "\n"), strings.Split(strings.TrimSpace(b), "\n")
	if len(la) != len(lb) {
		return false
	}
	for i := range la {
		if strings.TrimRight(la[i], " ") != strings.TrimRight(lb[i], " ") {
			return false
		}
	}
	return true
}

func TestRenderInit(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	renderInit(&b, initnode.Info{Node: 2, ThisNode: 1, State: "waiting", Since: now.Add(-2 * time.Minute)}, now)
	renderInit(&b, initnode.Info{ThisNode: 1, State: "booting"}, now)
	want := "init node: 2\nthis node (1): waiting since 2m ago\ninit node: none now\nthis node (1): booting since -\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

func TestServiceUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"service", "start"}, exitUsage, "takes one UNIT"},
		{[]string{"service", "start", "a.service", "-n", "2", "--all"}, exitUsage, "not both"},
		{[]string{"service", "stop", "a.service", "-n", "0"}, exitUsage, "not a node number"},
		{[]string{"init", "move"}, exitUsage, "takes one NODE"},
		{[]string{"init", "move", "x"}, exitUsage, "not a node number"},
		{[]string{"--run-dir", "/nonexistent", "init", "move", "2"}, exitError, "initfailover is not running"},
		{[]string{"--run-dir", "/nonexistent", "service", "status", "a.service"}, exitError, "initfailover is not running"},
		{[]string{"isolate"}, exitUsage, "takes one TARGET, got 0 argument(s) (see `ssi isolate --help`)"},
		{[]string{"isolate", "a.target", "b.target"}, exitUsage, "takes one TARGET"},
		{[]string{"isolate", "a.target", "--timeout", "2h"}, exitUsage, "--timeout 2h0m0s: want more than 0 and at most 1h0m0s (see `ssi isolate --help`)"},
		{[]string{"isolate", "a.target", "--timeout", "0s"}, exitUsage, "want more than 0"},
		{[]string{"isolate", "a.target", "--timeout", "x"}, exitUsage, "invalid argument"},
		{[]string{"--run-dir", "/nonexistent", "isolate", "maint"}, exitError, "clmsd is not running"},
	} {
		var out, errb bytes.Buffer
		if code := Main(tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("ssi %q: exit %d, %q; want %d and %q", tc.args, code, errb.String(), tc.code, tc.err)
		}
	}
}

// TestServiceBareUnitName: as with systemctl, a unit name without its
// type is a service (ssi service status nginx acts on nginx.service).
func TestServiceBareUnitName(t *testing.T) {
	dir := t.TempDir()
	log := logrus.New()
	log.SetOutput(io.Discard)
	srv := ifserver.New(ifserver.Config{Node: 1, Systemd: systemdfake.New(1, &systemdfake.Timeline{}, "nginx.service"), Log: log})
	defer srv.Close()
	ln, _, err := localapi.Listen(filepath.Join(dir, "initfailover.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(localapi.Credentials()))
	ifserver.NewAPI(srv).Register(g)
	go func() { _ = g.Serve(ln) }()
	defer g.Stop()
	for _, unit := range []string{"nginx", "nginx.service"} {
		code, out, errs := run(dir, "service", "status", unit)
		if code != 0 || !regexp.MustCompile(`(?m)^1 +nginx\.service +loaded +inactive`).MatchString(out) {
			t.Errorf("ssi service status %s: exit %d\n%s%s", unit, code, out, errs)
		}
	}
}
