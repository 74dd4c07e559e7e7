package cpid

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestMake(t *testing.T) {
	for _, tc := range []struct {
		node uint32
		pid  int32
		want CPID
		err  error
	}{
		{1, 1, 1<<22 | 1, nil},
		{2, 1234, 8389842, nil},
		{511, MaxPID, math.MaxInt32, nil},
		{0, 5, 0, ErrNode},
		{512, 5, 0, ErrNode},
		{1024, 5, 0, ErrNode},
		{1, 0, 0, ErrPID},
		{1, -1, 0, ErrPID},
		{1, 1 << 22, 0, ErrPID},
	} {
		got, err := Make(tc.node, tc.pid)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("Make(%d, %d) = %d, %v; want %d, %v", tc.node, tc.pid, got, err, tc.want, tc.err)
			continue
		}
		if err == nil && (got.Node() != tc.node || got.PID() != tc.pid || !got.Valid()) {
			t.Errorf("Make(%d, %d) = %d decodes to node %d pid %d", tc.node, tc.pid, got, got.Node(), got.PID())
		}
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want CPID
		err  error
		msg  string
	}{
		{"8389842", MustMake(2, 1234), nil, ""},
		{"4194305", Min, nil, ""},
		{"2147483647", MustMake(511, MaxPID), nil, ""},
		{"", 0, ErrSyntax, "cpid: empty: not a decimal number"},
		{"12a", 0, ErrSyntax, `cpid: "12a": not a decimal number`},
		{" 4194305", 0, ErrSyntax, `cpid: " 4194305": not a decimal number`},
		{"+4194305", 0, ErrSyntax, `cpid: "+4194305": not a decimal number`},
		{"04194305", 0, ErrSyntax, `cpid: "04194305" has a leading zero: not a decimal number`},
		{"-4194305", 0, ErrRange, `cpid: "-4194305" is negative (a process group -CPGID is not a process): out of range`},
		{"2147483648", 0, ErrRange, "cpid: 2147483648 is out of range (a cpid is at most 2147483647): out of range"},
		{"99999999999999999999999", 0, ErrRange, "cpid: 99999999999999999999999 is out of range (a cpid is at most 2147483647): out of range"},
		{"1234", 0, ErrNode, "cpid: 1234 has node 0: a bare pid, not a cluster pid (node<<22|pid, at least 4194305): no valid node"},
		{"0", 0, ErrNode, "cpid: 0 has node 0: a bare pid, not a cluster pid (node<<22|pid, at least 4194305): no valid node"},
		{"4194304", 0, ErrPID, "cpid: 4194304 (node 1) has pid 0: no valid pid"},
		{"1.5", 0, ErrSyntax, `cpid: "1.5": not a decimal number`},
	} {
		got, err := Parse(tc.in)
		if !errors.Is(err, tc.err) || got != tc.want {
			t.Errorf("Parse(%q) = %d, %v; want %d, %v", tc.in, got, err, tc.want, tc.err)
			continue
		}
		if err != nil && err.Error() != tc.msg {
			t.Errorf("Parse(%q) error %q; want %q", tc.in, err, tc.msg)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Target
		err  string
	}{
		{"8389842", Target{ID: 8389842}, ""},
		{"-8389842", Target{ID: 8389842, Group: true}, ""},
		{"-", Target{}, `cpid: "-" is negative (a process group -CPGID is not a process): out of range`},
		{"--8389842", Target{}, `cpid: "-8389842" is negative (a process group -CPGID is not a process): out of range (in the process group "--8389842")`},
		{"-12", Target{}, `cpid: 12 has node 0: a bare pid, not a cluster pid (node<<22|pid, at least 4194305): no valid node (in the process group "-12")`},
	} {
		got, err := ParseTarget(tc.in)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v, %s", tc.in, got, err, tc.want, tc.err)
		}
		if err == nil && got.String() != tc.in {
			t.Errorf("ParseTarget(%q).String() = %q", tc.in, got.String())
		}
	}
}

// FuzzParse: Parse never panics, accepts exactly the canonical decimal of
// a valid cpid, and its errors are one line with the package prefix once.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"8389842", "4194305", "2147483647", "2147483648", "", "-1", "0", "4194304", "007", "-8389842", "1e9", "\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		if err != nil {
			if c != 0 || strings.Count(err.Error(), "cpid:") != 1 || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Parse(%q) = %d, %q", s, c, err)
			}
		} else {
			if !c.Valid() || c.String() != s {
				t.Fatalf("Parse(%q) = %d (valid %v, prints %q)", s, c, c.Valid(), c.String())
			}
			if m, err := Make(c.Node(), c.PID()); err != nil || m != c {
				t.Fatalf("Make(Node, PID) of %d = %d, %v", c, m, err)
			}
		}
		tg, err := ParseTarget(s)
		if err == nil && tg.String() != s {
			t.Fatalf("ParseTarget(%q).String() = %q", s, tg.String())
		}
	})
}
