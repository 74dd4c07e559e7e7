package criu

import (
	"testing"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Version
		ok   bool
	}{
		{"Version: 4.2.1\n", Version{4, 2, 1}, true},
		{"Version: 4.2.1\nGitID: v4.2.1-3-gdeadbee\n", Version{4, 2, 1}, true},
		{"\n  Version: 4.0\n", Version{4, 0, 0}, true},
		{"Version: 3.17.1\n", Version{3, 17, 1}, true},
		{"Version:4.2", Version{4, 2, 0}, true},
		{"", Version{}, false},
		{"criu 4.2.1\n", Version{}, false},
		{"GitID: v4.2\nVersion: 4.2\n", Version{}, false},
		{"Version: 4\n", Version{}, false},
		{"Version: 4.2.1.7\n", Version{}, false},
		{"Version: 4.x\n", Version{}, false},
		{"Version: 4.-2\n", Version{}, false},
		{"Version: 4.+2\n", Version{}, false},
		{"Version: 4.02\n", Version{}, false},
		{"Version: 4.2.99999\n", Version{}, false},
		{"Version: 4.2-rc1\n", Version{}, false},
		{"Version: 4..2\n", Version{}, false},
	} {
		got, err := ParseVersion([]byte(tc.in))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestVersionLess(t *testing.T) {
	for _, tc := range []struct {
		v, w Version
		less bool
	}{
		{Version{3, 17, 1}, MinVersion, true},
		{Version{4, 1, 1}, MinVersion, true},
		{Version{4, 2, 0}, MinVersion, false},
		{Version{4, 2, 1}, MinVersion, false},
		{Version{5, 0, 0}, MinVersion, false},
		{Version{4, 2, 1}, Version{4, 2, 2}, true},
		{Version{4, 3, 0}, Version{4, 2, 9}, false},
	} {
		if got := tc.v.Less(tc.w); got != tc.less {
			t.Errorf("%v.Less(%v) = %v, want %v", tc.v, tc.w, got, tc.less)
		}
	}
}

// FuzzParseVersion: ParseVersion never panics, accepts only bounded
// numbers, and what it accepts prints back to text it parses the same.
func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"Version: 4.2.1\n", "Version: 4.0\nGitID: x\n", "Version: 3.17.1", "", "Version: 1.2.3.4", "Version: 9999.0"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVersion(b)
		if err != nil {
			if v != (Version{}) {
				t.Fatalf("ParseVersion(%q) = %v with error %v", b, v, err)
			}
			return
		}
		for _, n := range []int{v.Major, v.Minor, v.Sublevel} {
			if n < 0 || n > maxComponent {
				t.Fatalf("ParseVersion(%q) = %v: component out of range", b, v)
			}
		}
		again, err := ParseVersion([]byte("Version: " + v.String() + "\n"))
		if err != nil || again != v {
			t.Fatalf("%v prints as %q, which parses as %v, %v", v, v.String(), again, err)
		}
	})
}
