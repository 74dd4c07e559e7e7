package vprocdspec

import "testing"

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
	if c := Default(); c.Validate() != nil || c.ProcMount != "/cluster/proc" {
		t.Errorf("Default() = %+v, %v", c, c.Validate())
	}
}
