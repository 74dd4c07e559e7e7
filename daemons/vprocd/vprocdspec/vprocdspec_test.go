package vprocdspec

import (
	"errors"
	"testing"

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
