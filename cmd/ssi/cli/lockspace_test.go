package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/openssi/openssi/client/dlm"
)

func TestLockspaceUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lockspace", "create"}, "takes 1 argument(s), got 0"},
		{[]string{"lockspace", "create", "--mode", "0800", "x"}, `mode "0800": want octal`},
		{[]string{"lockspace", "create", "--mode", "0", "x"}, `mode "0": want octal`},
		{[]string{"lockspace", "chmod", "1777", "x"}, `mode "1777": want octal`},
		{[]string{"lockspace", "chmod", "0660"}, "takes 2 argument(s), got 1"},
		{[]string{"lockspace", "chown", ":", "x"}, `owner ":": want USER`},
		{[]string{"lockspace", "delete"}, "takes 1 argument(s), got 0"},
		{[]string{"lockspace", "list", "x"}, "takes no arguments"},
	} {
		var out, errOut bytes.Buffer
		if code := Main(append([]string{"--run-dir", t.TempDir()}, tc.args...), &out, &errOut); code != exitUsage || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut.String(), exitUsage, tc.want)
		}
	}
}

func TestParseOwner(t *testing.T) {
	tests := []struct {
		in       string
		uid, gid int64
		ok       bool
	}{
		{"1000", 1000, -1, true},
		{"1000:100", 1000, 100, true},
		{":100", -1, 100, true},
		{"1000:", 1000, -1, true},
		{"root:0", 0, 0, true},
		{":", 0, 0, false},
		{"no-such-user-here", 0, 0, false},
	}
	for _, tt := range tests {
		uid, gid, err := parseOwner(tt.in)
		if (err == nil) != tt.ok || tt.ok && (uid != tt.uid || gid != tt.gid) {
			t.Errorf("parseOwner(%q) = %d, %d, %v; want %d, %d, ok %v", tt.in, uid, gid, err, tt.uid, tt.gid, tt.ok)
		}
	}
}

func TestRenderLockspaces(t *testing.T) {
	var b bytes.Buffer
	renderLockspaces(&b, []dlm.LockspaceInfo{
		{Name: "jobs", UID: 4000001, GID: 4000002, Mode: 0o660, Explicit: true},
		{Name: "mine\x1b[2J", UID: 4000001, GID: 4000001, Mode: 0o600, Own: true},
		{Name: "openssi.clmsd", Mode: 0o660, System: true, Explicit: true},
	})
	want := "LOCKSPACE      OWNER    GROUP    MODE  KIND\n" +
		"jobs           4000001  4000002  0660  shared\n" +
		`"mine\x1b[2J"` + "  4000001  4000001  0600  own,first-use\n" +
		"openssi.clmsd  root     root     0660  system\n"
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	renderLockspaces(&b, nil)
	if b.String() != "no lockspaces\n" {
		t.Fatalf("empty list: %q", b.String())
	}
}
