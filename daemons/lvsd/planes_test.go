package main

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/daemons/lvsd/server"
	"github.com/openssi/openssi/daemons/lvsd/vip"
	"github.com/openssi/openssi/internal/daemon"
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

// TestIPVSMissingIsConfigError: ipvs-dr or ipvs-nat on a kernel without
// IPVS is one line naming lvsd.forwarding, exit 2 (not exit 1, which
// systemd restarts for ever).
func TestIPVSMissingIsConfigError(t *testing.T) {
	lacks := func() (bool, error) { return false, nil }
	broken := func() (bool, error) { return false, errors.New("netlink: no such family") }
	for _, fwd := range []string{lvsdspec.ForwardIPVSDR, lvsdspec.ForwardIPVSNA} {
		for name, available := range map[string]func() (bool, error){"missing": lacks, "undetectable": broken} {
			_, err := chooseForwarding(fwd, available)
			var ce daemon.ConfigError
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "config: lvsd.forwarding: ") || strings.Contains(err.Error(), "\n") {
				t.Errorf("%s, IPVS %s: %v, want a config error naming lvsd.forwarding", fwd, name, err)
			}
		}
	}
}

// TestCheckVIPsNamesTheKey: an interface that does not exist names
// lvsd.vips[i].interface, a VIP outside the interface's subnets
// lvsd.vips[i].address; both exit 2 (a ConfigError).
func TestCheckVIPsNamesTheKey(t *testing.T) {
	ok := server.VIP{Interface: "lo", Prefix: netip.MustParsePrefix("127.0.0.1/8")}
	for _, tc := range []struct {
		vips []server.VIP
		want string
	}{
		{[]server.VIP{{Interface: "lvsfixnoif0", Prefix: netip.MustParsePrefix("10.9.9.9/24")}}, "config: lvsd.vips[0].interface: "},
		{[]server.VIP{{Interface: "lo", Prefix: netip.MustParsePrefix("10.9.9.9/24")}}, "config: lvsd.vips[0].address: "},
		{[]server.VIP{{Interface: "lo", Prefix: netip.MustParsePrefix("10.9.9.9/24")}, {Interface: "lvsfixnoif0", Prefix: netip.MustParsePrefix("10.9.9.9/24")}}, "config: lvsd.vips[0].address: "},
	} {
		// The checks of lo need no privilege; a loopback VIP is refused,
		// so the first case's pass through lo uses a stand-in check.
		check := func(ifname string, p netip.Prefix) error {
			if ifname == ok.Interface && p == ok.Prefix {
				return nil
			}
			return vip.Check(ifname, p)
		}
		err := checkVIPs(tc.vips, check)
		var ce daemon.ConfigError
		if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: %v, want a config error starting %q", tc.vips, err, tc.want)
		}
	}
	if err := checkVIPs([]server.VIP{ok}, func(string, netip.Prefix) error { return nil }); err != nil {
		t.Errorf("good VIPs: %v", err)
	}
	// A kernel failure is no configuration error.
	if err := checkVIPs([]server.VIP{ok}, func(string, netip.Prefix) error { return errors.New("netlink: EPERM") }); err == nil || errors.As(err, new(daemon.ConfigError)) {
		t.Errorf("a kernel failure: %v, want a plain error", err)
	}
}

// TestProxyLimits: the proxies' one budget fits well under the unit's
// LimitNOFILE and MemoryMax (at most half of each), and UDP flows, which
// spoofed sources can open, have a quarter of it.
func TestProxyLimits(t *testing.T) {
	l, unit := proxyLimits(), lvsdspec.Daemon.Hardening.Limits
	if l.Units <= 0 || 6*l.Units > unit.NOFILE/2 || 64*l.Units > unit.MemoryMaxMiB*1024/2 {
		t.Errorf("%d units for LimitNOFILE %d and MemoryMax %d MiB", l.Units, unit.NOFILE, unit.MemoryMaxMiB)
	}
	if l.Flows <= 0 || l.Flows > l.Units/4 || l.FlowsPerSource <= 0 || l.FlowsPerSource > l.Flows {
		t.Errorf("flows %d, per source %d of %d units", l.Flows, l.FlowsPerSource, l.Units)
	}
}
