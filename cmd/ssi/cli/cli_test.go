package cli

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/internal/daemons"
)

func TestRenderNodes(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	v := cluster.View{
		Epoch: 7, ThisNode: 1, Quorum: true, SkewThreshold: 100 * time.Millisecond,
		Nodes: []cluster.Node{
			{Number: 1, Name: "node1", Address: "10.0.0.1", State: cluster.Up, Since: now.Add(-90 * time.Second), SkewKnown: true},
			{Number: 2, Name: "node2", Address: "10.0.0.2", State: cluster.Down, Since: now.Add(-3 * time.Hour)},
			{Number: 3, Name: "node3", Address: "10.0.0.3", State: cluster.Up, Since: now.Add(-5 * time.Second), SkewKnown: true, Skew: -250 * time.Millisecond, SkewWarning: true},
		},
	}
	var b bytes.Buffer
	renderNodes(&b, v, now, 0)
	want := `NODE  NAME   ADDRESS   STATE  SINCE      SKEW
1*    node1  10.0.0.1  UP     1m ago     +0µs
2     node2  10.0.0.2  DOWN   3h00m ago  -
3     node3  10.0.0.3  UP     5s ago     -250.0ms !
epoch 7; * is this node; WARNING: 1 node(s) with clock skew above 100ms: check NTP
`
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	v.Quorum = false
	v.QuorumLostSince = now.Add(-12 * time.Second)
	renderNodes(&b, v, now, 0)
	if !strings.HasPrefix(b.String(), "WARNING: this node has lost the cluster (no Consul quorum reachable, lost 12s ago)") {
		t.Fatalf("no quorum warning: %s", b.String())
	}
}

func TestFormatting(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct{ got, want string }{
		{formatOffset(1500 * time.Microsecond), "+1.5ms"},
		{formatOffset(-2 * time.Second), "-2.00s"},
		{formatOffset(30 * time.Microsecond), "+30µs"},
		{ago(now, time.Time{}), "-"},
		{ago(now, now.Add(time.Second)), "0s ago"},
		{ago(now, now.Add(-72*time.Hour)), "2026-02-26 12:00Z"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q want %q", tt.got, tt.want)
		}
	}
	var b bytes.Buffer
	renderEvent(&b, cluster.Event{Epoch: 4, Type: cluster.NodeDown, Node: cluster.Node{Number: 2, Name: "n2", Address: "a"}, Time: now})
	if b.String() != "2026-03-01T12:00:00Z epoch=4 NODEDOWN node=2 name=n2 address=a\n" {
		t.Fatalf("event line %q", b.String())
	}
}

func TestCLIWithoutClmsd(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--run-dir", dir, "nodes"}, 1, "ssi: cluster: clmsd is not running on this node (no answer on " + filepath.Join(dir, "clmsd.sock") + "): start it with `systemctl start openssi-clmsd`\n"},
		{[]string{"--run-dir", dir, "events"}, 1, "clmsd is not running"},
		{[]string{"--run-dir", dir, "node", "leave"}, 1, "clmsd is not running"},
		{[]string{"--run-dir", dir, "status"}, 1, fmt.Sprintf("%d of %d daemons not serving", len(daemons.All), len(daemons.All))},
		{[]string{"nodes", "-o", "yaml"}, 2, `-o "yaml" is not valid: want table, json or load`},
		{[]string{"nodes", "extra"}, 2, "ssi nodes takes no arguments"},
		{[]string{"nodes", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"node"}, 2, "needs a subcommand: leave"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := Main(tt.args, &out, &errOut)
		if code != tt.code || !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("%v: exit %d stderr %q, want %d containing %q", tt.args, code, errOut.String(), tt.code, tt.want)
		}
		if strings.Count(errOut.String(), "\n") > 1 {
			t.Errorf("%v: error is not one line: %q", tt.args, errOut.String())
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"nodes", "--help"}, {"status", "--help"}, {"events", "--help"}, {"node", "leave", "--help"}, {"version"}} {
		var out, errOut bytes.Buffer
		if code := Main(args, &out, &errOut); code != 0 || out.Len() == 0 {
			t.Errorf("%v: exit %d, stdout %q stderr %q", args, code, out.String(), errOut.String())
		}
	}
	var out bytes.Buffer
	Main([]string{"version"}, &out, &out)
	if !strings.HasPrefix(out.String(), "ssi ") {
		t.Fatalf("version %q", out.String())
	}
}

func TestLocksPurgeUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"locks", "--pid", "3"}, "--pid goes with --purge"},
		{[]string{"locks", "--purge"}, "--purge needs the LOCKSPACE"},
		{[]string{"locks", "--purge", "--pid", "-1", "ls"}, "--pid -1: want a process id"},
	} {
		var out, errOut bytes.Buffer
		if code := Main(append([]string{"--run-dir", t.TempDir()}, tc.args...), &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut.String(), exitUsage, tc.want)
		}
	}
}

// TestRenderLocksEscapesNames: a resource name is any bytes a user chose;
// the table shows it escaped, so that it cannot forge rows or columns nor
// send terminal escapes to whoever runs `ssi locks`.
func TestRenderLocksEscapesNames(t *testing.T) {
	tests := []struct{ name, want string }{
		{"plain", "plain"},
		{"caf\u00e9", "caf\u00e9"},
		{"a\tb", `"a\tb"`},
		{"x\ncli  forged  1  valid  1:1  granted  EX  -", `"x\ncli  forged  1  valid  1:1  granted  EX  -"`},
		{"\x1b[2J\x1b]0;pwned\a", `"\x1b[2J\x1b]0;pwned\a"`},
		{"bad\xffutf8", `"bad\xffutf8"`},
		{"nul\x00", `"nul\x00"`},
		{"two words", `"two words"`},
		{`"quoted"`, `"\"quoted\""`},
		{`back\slash`, `"back\\slash"`},
		{"\u202egnp.exe", `"\u202egnp.exe"`},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		renderLocks(&b, &dlm.Listing{Resources: []dlm.Resource{{Lockspace: "app", Name: tt.name, Master: 1, Locks: []dlm.LockInfo{
			{Node: 1, PID: 7, State: dlm.Granted, Granted: dlm.EX},
		}}}})
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		if len(lines) != 2 {
			t.Errorf("name %q: %d lines, want 2:\n%s", tt.name, len(lines), b.String())
			continue
		}
		if !strings.HasPrefix(lines[1], "app  ") || !strings.Contains(lines[1], "  "+tt.want+"  ") {
			t.Errorf("name %q: row\n%s\nwant the name shown as %s", tt.name, lines[1], tt.want)
		}
		if strings.ContainsAny(b.String(), "\x1b\a\t\r") {
			t.Errorf("name %q: control characters in the output %q", tt.name, b.String())
		}
	}
}

// TestRenderLocks: the table `ssi locks` prints (the same bytes as when it
// rendered the wire reply itself).
func TestRenderLocks(t *testing.T) {
	r := &dlm.Listing{Resources: []dlm.Resource{
		{Lockspace: "app", Name: "config", Master: 2, ValueValid: true, Locks: []dlm.LockInfo{
			{Node: 1, PID: 4242, State: dlm.Granted, Granted: dlm.PR},
			{Node: 3, PID: 77, State: dlm.Converting, Granted: dlm.NL, Requested: dlm.EX},
			{Node: 2, PID: 9, State: dlm.Waiting, Requested: dlm.CW},
		}},
		{Lockspace: "cli", Name: "kept", Master: 1, Locks: []dlm.LockInfo{
			{Node: 1, PID: 12345, State: dlm.Granted, Granted: dlm.EX, Orphan: true},
		}},
	}}
	var b bytes.Buffer
	renderLocks(&b, r)
	renderLocks(&b, &dlm.Listing{})
	want := `LOCKSPACE  RESOURCE  MASTER  LVB      OWNER    STATE             GRANTED  REQUESTED
app        config    2       valid    1:4242   granted           PR       -
                                      3:77     converting        NL       EX
                                      2:9      waiting           -        CW
cli        kept      1       invalid  1:12345  granted (orphan)  EX       -
no locks
`
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestLockEnv: the command of `ssi lock` gets its lock's fencing token,
// and never one inherited from an enclosing `ssi lock`.
func TestLockEnv(t *testing.T) {
	for _, tc := range []struct {
		env   []string
		token uint64
		want  []string
	}{
		{[]string{"PATH=/bin"}, 1<<40 + 2, []string{"PATH=/bin", "OPENSSI_LOCK_TOKEN=1099511627778"}},
		{[]string{"PATH=/bin"}, 0, []string{"PATH=/bin"}},
		{[]string{"OPENSSI_LOCK_TOKEN=5", "PATH=/bin", "OPENSSI_LOCK_TOKENX=1"}, 9, []string{"PATH=/bin", "OPENSSI_LOCK_TOKENX=1", "OPENSSI_LOCK_TOKEN=9"}},
		{[]string{"OPENSSI_LOCK_TOKEN=5"}, 0, []string{}},
	} {
		if got := lockEnv(tc.env, tc.token); !slices.Equal(got, tc.want) {
			t.Errorf("lockEnv(%q, %d) = %q, want %q", tc.env, tc.token, got, tc.want)
		}
	}
}

func TestConsulPolicy(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"consul", "policy", "node2", "2"}, exitOK, `key "openssi/clms/alive/2"`},
		{[]string{"consul", "policy", "node2"}, exitOK, `key_prefix "openssi/clms/"`},
		{[]string{"consul", "policy", "--help"}, exitOK, "/etc/openssi/consul.token"},
		{[]string{"consul", "policy"}, exitUsage, "takes NODE-NAME and an optional NUMBER"},
		{[]string{"consul", "policy", "a", "1", "2"}, exitUsage, "takes NODE-NAME and an optional NUMBER"},
		{[]string{"consul", "policy", "node2", "two"}, exitUsage, `NUMBER "two" is not a node number`},
		{[]string{"consul", "policy", "node2", "1025"}, exitUsage, "node number out of range"},
		{[]string{"consul", "policy", `no"de`}, exitUsage, "invalid Consul node name"},
		{[]string{"consul", "policy", "--root", "Node2"}, exitOK, `key_prefix "openssi/rootkeys/node2/"`},
		{[]string{"consul", "policy", "--root", "node2", "2"}, exitUsage, "--root takes NODE-NAME only"},
		{[]string{"consul", "policy", "--root", `no"de`}, exitUsage, "invalid Consul node name"},
		{[]string{"consul", "policy", "--help"}, exitOK, "/etc/openssi/consul-root.token"},
	} {
		var out, errOut bytes.Buffer
		code := Main(tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String()+errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stdout %q stderr %q; want exit %d and %q", tc.args, code, out.String(), errOut.String(), tc.code, tc.want)
		}
	}
}
