package cli

import (
	"reflect"
	"testing"

	"github.com/openssi/openssi/cmd/ssi/early"
)

// TestEarlyParsesAsSsi: whatever command line package early starts
// itself, ssi's own parsing reads the same way (node, -e, -C, command),
// and takes it without a usage error. Early may leave more to ssi than
// ssi refuses (a hex node, say), never less.
func TestEarlyParsesAsSsi(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		early bool // early starts it
	}{
		{[]string{"--", "true"}, true},
		{[]string{"-n", "2", "--", "sh", "-c", "x"}, true},
		{[]string{"-n2", "-e", "A=1", "--env=B=2", "-C", "/tmp", "--", "ls", "--", "-l"}, true},
		{[]string{"--node", "3", "--node=4", "-n=5", "--dir", "a", "-Cb", "--", "x"}, true},
		{[]string{"-e", "-x=1", "--", "x"}, true},
		{[]string{"-n", "0", "--", "x", "-n", "3"}, true},
		{[]string{"-n", "007", "--", "x"}, false}, // octal to ssi
		{[]string{"-n", "010", "--", "x"}, false},
		{[]string{"-n", "1_0", "--", "x"}, false},
		{[]string{"-n", "0x2", "--", "x"}, false},
		{[]string{"-n", "+2", "--", "x"}, false},
		{[]string{"-t", "--", "vi"}, false},
		{[]string{"-tn2", "--", "vi"}, false},
		{[]string{"--detach", "--", "x"}, false},
		{[]string{"--auto", "--", "x"}, false},
		{[]string{"--run-dir", "/x", "--", "x"}, false},
		{[]string{"true"}, false},
		{[]string{"-n", "2", "true"}, false},
		{[]string{"--"}, false},
		{[]string{"--n", "2", "--", "x"}, false},
		{[]string{"--e", "A=1", "--", "x"}, false},
		{[]string{"--C", "/", "--", "x"}, false},
		{[]string{"--nodes=2", "--", "x"}, false},
		{[]string{"-C=", "--", "x"}, true},
		{[]string{"-C=/tmp", "--", "x"}, true},
		{[]string{"-e=", "--", "x"}, true},
		{[]string{"-e", "NOEQUALS", "--", "x"}, true}, // early sends nothing: MergeEnv refuses it
	} {
		p, ok := early.Parse(tc.args)
		if ok != tc.early {
			t.Errorf("%q: early takes it: %v, want %v", tc.args, ok, tc.early)
		}
		if !ok {
			continue
		}
		cmd := newExec(&globals{})
		if err := cmd.ParseFlags(tc.args); err != nil {
			t.Errorf("%q: early takes it, ssi refuses: %v", tc.args, err)
			continue
		}
		f := cmd.Flags()
		node, _ := f.GetInt("node")
		envs, _ := f.GetStringArray("env")
		dir, _ := f.GetString("dir")
		rest := f.Args()
		if f.ArgsLenAtDash() != 0 {
			t.Errorf("%q: early takes it, ssi reads no -- before the command", tc.args)
		}
		if node != int(p.Node) || !reflect.DeepEqual(envs, nilIfEmpty(p.Sets)) || dir != p.Dir || !reflect.DeepEqual(rest, p.Args) {
			t.Errorf("%q: early reads node %d env %q dir %q args %q; ssi node %d env %q dir %q args %q",
				tc.args, p.Node, p.Sets, p.Dir, p.Args, node, envs, dir, rest)
		}
		for _, name := range []string{"tty", "detach", "auto", "migratable"} {
			if f.Changed(name) {
				t.Errorf("%q: early takes it, ssi reads --%s", tc.args, name)
			}
		}
	}
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return []string{}
	}
	return s
}
