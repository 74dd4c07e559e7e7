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
	d := Default()
	if err := d.Validate(); err != nil {
		t.Errorf("Default() is not valid: %v", err)
	}
}
