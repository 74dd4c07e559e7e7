package initfailoverspec

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/settings"
)

func TestCheckUnit(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"nginx.service", true},
		{"openssi-init.target", true},
		{"getty@tty1.service", true},
		{"dev-sda1.device", true},
		{"a:b_c-d\\x2d.mount", true},
		{"", false},
		{"nginx", false},
		{".service", false},
		{"@x.service", false},
		{"a@b@c.service", false},
		{"../etc/passwd.service", false},
		{"a b.service", false},
		{"a\n.service", false},
		{"nginx.conf", false},
		{strings.Repeat("a", 250) + ".service", false},
	} {
		if err := CheckUnit(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckUnit(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		ok   bool
	}{
		{"default", func(*Config) {}, true},
		{"services", func(c *Config) { c.Services = []string{"web.service", "cron.timer"} }, true},
		{"bad service", func(c *Config) { c.Services = []string{"web"} }, false},
		{"target not a target", func(c *Config) { c.Target = "web.service" }, false},
		{"stop timeout short", func(c *Config) { c.StopTimeout = 500 * time.Millisecond }, false},
		{"stop timeout long", func(c *Config) { c.StopTimeout = time.Hour }, false},
		{"port", func(c *Config) { c.RPCPort = 0 }, false},
	} {
		c := Default()
		tc.mod(&c)
		err := c.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, settings.ErrInvalid)) {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestUnits(t *testing.T) {
	c := Default()
	c.Services = []string{"a.service"}
	if got := strings.Join(c.Units(), " "); got != "openssi-init.target a.service" {
		t.Errorf("Units() = %q", got)
	}
}

// FuzzCheckUnit: a name CheckUnit accepts is what systemd and a D-Bus
// call can carry: short, no path, space or control character, a known
// type suffix.
func FuzzCheckUnit(f *testing.F) {
	for _, s := range []string{"nginx.service", "a@b.service", "../x.service", "x\x00.service", ".target", "é.service"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckUnit(name) != nil {
			return
		}
		if len(name) > MaxUnitName || strings.ContainsAny(name, "/ \t\n\x00") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "@") {
			t.Fatalf("accepted %q", name)
		}
		for _, r := range name {
			if r > 0x7e || r < 0x21 {
				t.Fatalf("accepted %q with %q", name, r)
			}
		}
		ok := false
		for _, s := range unitSuffixes {
			ok = ok || strings.HasSuffix(name, s)
		}
		if !ok {
			t.Fatalf("accepted %q without a unit type", name)
		}
	})
}

// TestHardeningKeepsRootsFileAccess: initfailover runs as root, but the
// files it must open belong to the daemons' user (the Consul agent's
// socket, mode 0600; /run/openssi, 0755): without CAP_DAC_OVERRIDE in its
// bounding set it never became ready under systemd (the lab: "connect:
// permission denied"). It needs no other capability.
func TestHardeningKeepsRootsFileAccess(t *testing.T) {
	h := Daemon.Hardening
	if h.User != "" {
		t.Fatalf("initfailover runs as %q, want root (the init lock's lockspace is root's)", h.User)
	}
	if len(h.Capabilities) != 1 || h.Capabilities[0] != "CAP_DAC_OVERRIDE" {
		t.Errorf("capabilities %v, want exactly CAP_DAC_OVERRIDE", h.Capabilities)
	}
}

func TestUnitName(t *testing.T) {
	for in, want := range map[string]string{
		"nginx":               "nginx.service",
		"nginx.service":       "nginx.service",
		"backup.timer":        "backup.timer",
		"getty@tty1":          "getty@tty1.service",
		"foo.bar":             "foo.bar.service",
		"openssi-init.target": "openssi-init.target",
		".service":            ".service.service",
		"":                    "",
	} {
		if got := UnitName(in); got != want {
			t.Errorf("UnitName(%q) = %q, want %q", in, got, want)
		}
	}
}
