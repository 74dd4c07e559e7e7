package vprocdspec

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/config"

	"github.com/openssi/openssi/internal/settings"
)

func TestValidateLoadLevel(t *testing.T) {
	for _, tc := range []struct {
		names []string
		ok    bool
	}{
		{nil, true},
		{[]string{"make", "gcc"}, true},
		{[]string{"make", "/usr/bin/gcc"}, false},
		{[]string{""}, false},
		{[]string{"a b"}, false},
	} {
		c := Default()
		c.LoadLevel = tc.names
		err := c.Validate()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, settings.ErrInvalid)) {
			t.Errorf("loadlevel %q: Validate() = %v, want ok %v", tc.names, err, tc.ok)
		}
	}
}

func TestValidateProcMount(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"/cluster/proc", true},
		{"", true},
		{"/x", true},
		{"/", false},
		{"cluster/proc", false},
		{"/cluster/../proc", false},
		{"/cluster/proc/", false},
	} {
		c := Default()
		c.ProcMount = tc.path
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("proc_mount %q: %v, want ok %v", tc.path, err, tc.ok)
		}
	}
}

func TestDefaultIsValid(t *testing.T) {
	if c := Default(); c.Validate() != nil || c.ProcMount != "/cluster/proc" {
		t.Errorf("Default() = %+v, %v", c, c.Validate())
	}
}

func TestValidateCRIU(t *testing.T) {
	for _, tc := range []struct {
		path string
		ok   bool
	}{
		{"", true},
		{"/usr/sbin/criu", true},
		{"criu", false},
		{"/opt/../criu", false},
		{"/opt/criu/", false},
	} {
		c := Default()
		c.Migrate.CRIU = tc.path
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("migrate.criu %q: %v, want ok %v", tc.path, err, tc.ok)
		}
	}
}

func TestValidateLeveler(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Leveler)
		key  string // "" when valid
	}{
		{"the defaults", func(*Leveler) {}, ""},
		{"off", func(l *Leveler) { l.Enabled = false }, ""},
		{"a short period", func(l *Leveler) { l.Period = 100 * time.Millisecond }, ""},
		{"a period too short", func(l *Leveler) { l.Period = 10 * time.Millisecond }, "vprocd.leveler.period"},
		{"a period too long", func(l *Leveler) { l.Period = 2 * time.Minute }, "vprocd.leveler.period"},
		{"no cool-down", func(l *Leveler) { l.CoolDown = 0 }, "vprocd.leveler.cool_down"},
		{"a cool-down too long", func(l *Leveler) { l.CoolDown = 2 * time.Hour }, "vprocd.leveler.cool_down"},
		{"a stability factor of 1", func(l *Leveler) { l.Stability = 1 }, "vprocd.leveler.stability"},
		{"a stability factor too large", func(l *Leveler) { l.Stability = 11 }, "vprocd.leveler.stability"},
		{"a stability factor not a number", func(l *Leveler) { l.Stability = math.NaN() }, "vprocd.leveler.stability"},
	} {
		c := Default()
		tc.set(&c.Leveler)
		err := c.Validate()
		var se *settings.Error
		switch {
		case tc.key == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.key != "" && (!errors.As(err, &se) || !strings.Contains(err.Error(), tc.key) || strings.Contains(err.Error(), "\n")):
			t.Errorf("%s: %v, want a one-line error about %s", tc.name, err, tc.key)
		}
		if err != nil {
			t.Logf("%s: %v", tc.name, err)
		}
	}
}

// TestLoadLeveler: the shipped section loads to the defaults, and a file
// that sets part of vprocd.leveler keeps the defaults of the rest.
func TestLoadLeveler(t *testing.T) {
	load := func(text string) (Config, error) {
		path := filepath.Join(t.TempDir(), "openssi.yaml")
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(config.LoadOptions{Path: path, Sections: []config.Section{Daemon.Config}})
		if err != nil {
			return Config{}, err
		}
		return From(c), nil
	}
	c, err := load(example)
	if err != nil || !reflect.DeepEqual(c, Default()) {
		t.Fatalf("the shipped section: %+v, %v; want %+v", c, err, Default())
	}
	c, err = load("vprocd:\n  leveler:\n    enabled: false\n    stability: 2\n")
	want := Default().Leveler
	want.Enabled, want.Stability = false, 2
	if err != nil || c.Leveler != want {
		t.Errorf("a part of vprocd.leveler: %+v, %v; want %+v", c.Leveler, err, want)
	}
	if _, err := load("vprocd:\n  leveler:\n    period: 1h\n"); err == nil || !strings.Contains(err.Error(), "vprocd.leveler.period") {
		t.Errorf("a period of 1h: %v", err)
	}
}
