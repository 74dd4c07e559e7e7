package load

import (
	"strings"
	"testing"
)

func TestCheckProgram(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"make", true},
		{"gcc-12", true},
		{"a.out", true},
		{"", false},
		{".", false},
		{"..", false},
		{"/usr/bin/make", false},
		{"my prog", false},
		{"tab\t", false},
		{"nl\n", false},
		{"\xff", false},
		{strings.Repeat("x", MaxProgramName), true},
		{strings.Repeat("x", MaxProgramName+1), false},
	} {
		if err := CheckProgram(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckProgram(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestProgramOf(t *testing.T) {
	for in, want := range map[string]string{"make": "make", "/usr/bin/make": "make", "./a.out": "a.out", "": "", "dir/": "dir"} {
		if got := ProgramOf(in); got != want {
			t.Errorf("ProgramOf(%q) = %q, want %q", in, got, want)
		}
	}
}
