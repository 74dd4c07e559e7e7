package keepalivedspec

import (
	"errors"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/settings"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"relative dir", func(c *Config) { c.Dir = "keepalive.d" }, false},
		{"unclean dir", func(c *Config) { c.Dir = "/etc/openssi/../keepalive.d" }, false},
		{"stop timeout short", func(c *Config) { c.StopTimeout = 500 * time.Millisecond }, false},
		{"rescan long", func(c *Config) { c.Rescan = time.Hour }, false},
	} {
		c := Default()
		tc.mod(&c)
		err := c.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, settings.ErrInvalid)) {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// TestNeverDebiansKeepalived: the program, the unit and the lockspace are
// OpenSSI's own names, never Debian's keepalived (VRRP).
func TestNeverDebiansKeepalived(t *testing.T) {
	if Daemon.Binary != "openssi-keepalived" || Daemon.Unit != "openssi-keepalived.service" {
		t.Errorf("binary %q, unit %q", Daemon.Binary, Daemon.Unit)
	}
	if Daemon.Hardening.User != "" {
		t.Errorf("runs as %q, want root (its lockspace is root's)", Daemon.Hardening.User)
	}
}
