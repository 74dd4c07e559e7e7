package roottest

import (
	"strings"
	"testing"
)

func TestMissing(t *testing.T) {
	has := func(names ...string) func(string) bool {
		return func(tool string) bool {
			for _, n := range names {
				if n == tool {
					return true
				}
			}
			return false
		}
	}
	tests := []struct {
		name     string
		euid     int
		disabled bool
		ci       bool
		have     func(string) bool
		tools    []string
		want     string // substring of the message; "" for nothing missing
		fail     bool
	}{
		{name: "root with tools", euid: 0, have: has("debootstrap"), tools: []string{"debootstrap"}},
		{name: "root, no tools needed", euid: 0, have: has()},
		{name: "not root", euid: 1000, have: has(), want: "needs root; lacks root: run `make test` as root"},
		{name: "tool missing", euid: 0, have: has(), tools: []string{"debootstrap", "systemd-nspawn"}, want: "needs root and debootstrap, systemd-nspawn; lacks debootstrap, systemd-nspawn"},
		{name: "skip says CI fails", euid: 1000, have: has(), want: "under CI=true this fails"},
		{name: "CI fails", euid: 1000, ci: true, have: has(), want: "CI=true makes this a failure", fail: true},
		{name: "make unit skips even root under CI", euid: 0, disabled: true, ci: true, have: has("x"), tools: []string{"x"}, want: "OPENSSI_NO_ROOT is set (make unit)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, fail := missing(tt.euid, tt.disabled, tt.ci, tt.have, tt.tools)
			if tt.want == "" {
				if msg != "" || fail {
					t.Fatalf("missing = %q, %v; want nothing", msg, fail)
				}
				return
			}
			if !strings.Contains(msg, tt.want) || fail != tt.fail {
				t.Fatalf("missing = %q, %v; want %q, %v", msg, fail, tt.want, tt.fail)
			}
		})
	}
}
