package proctext

import (
	"strings"
	"testing"
)

func TestParseKB(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  string
	}{
		{" 24684092 kB", 24684092, ""},
		{"\t0 kB\n", 0, ""},
		{"12 MB", 0, "is not a size in kB"},
		{"-1 kB", 0, "is not a size in kB"},
		{"+1 kB", 0, "is not a size in kB"},
		{"12", 0, "is not a size in kB"},
		{"1125899906842624 kB", 0, "kB is out of range"},
		{"99999999999999999999999 kB", 0, "kB is out of range"},
	} {
		got, err := ParseKB([]byte(tc.in))
		if tc.err == "" && (err != nil || got != tc.want) || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("ParseKB(%q) = %d, %v; want %d, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestClip(t *testing.T) {
	if got := Clip([]byte(strings.Repeat("x", 40))); got != strings.Repeat("x", 32)+"..." {
		t.Errorf("Clip = %q", got)
	}
	if got := Clip([]byte("short")); got != "short" {
		t.Errorf("Clip = %q", got)
	}
}
