package main

import (
	"errors"
	"testing"

	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
)

// TestChooseForwarding: auto is the user-space proxy even on a kernel
// with IPVS (whose NAT needs the backends' routes through the director,
// which nothing sets up); ipvs-dr and ipvs-nat are explicit opt-ins.
func TestChooseForwarding(t *testing.T) {
	has := func() (bool, error) { return true, nil }
	lacks := func() (bool, error) { return false, nil }
	broken := func() (bool, error) { return false, errors.New("netlink: no such family") }
	for _, tc := range []struct {
		forwarding string
		available  func() (bool, error)
		ipvs       bool
	}{
		{lvsdspec.ForwardAuto, has, false},
		{lvsdspec.ForwardAuto, lacks, false},
		{lvsdspec.ForwardAuto, broken, false},
		{lvsdspec.ForwardProxy, has, false},
		{lvsdspec.ForwardIPVSNA, has, true},
		{lvsdspec.ForwardIPVSDR, has, true},
	} {
		got, err := chooseForwarding(tc.forwarding, tc.available)
		if err != nil || got != tc.ipvs {
			t.Errorf("%s: IPVS %v, %v; want %v", tc.forwarding, got, err, tc.ipvs)
		}
	}
}
