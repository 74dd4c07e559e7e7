package vprocdspec_test

import (
	"strings"
	"testing"

	"github.com/openssi/openssi/daemons/vprocd/vprocdspec"
	"github.com/openssi/openssi/packaging"
)

// TestUnitAllowsProcMount: vprocd mounts /cluster/proc with FUSE, so its
// unit must let it open /dev/fuse (DevicePolicy=auto with no DeviceAllow=
// allows every device; a DeviceAllow= would close the others to the
// programs it starts) and call mount(2) (CAP_SYS_ADMIN, no system call
// filter), and must not give it a mount namespace of its own, or the
// mount would be seen by vprocd alone.
func TestUnitAllowsProcMount(t *testing.T) {
	u := packaging.ServiceUnit(vprocdspec.Daemon)
	set := map[string]string{}
	for _, line := range strings.Split(u, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(k, "#") {
			set[k] = v
		}
	}
	if p, allow := set["DevicePolicy"], set["DeviceAllow"]; !(p == "auto" && allow == "") && !strings.Contains(allow, "/dev/fuse") {
		t.Errorf("DevicePolicy=%s DeviceAllow=%s: /dev/fuse is not allowed", p, allow)
	}
	if !strings.Contains(set["CapabilityBoundingSet"], "CAP_SYS_ADMIN") || set["SystemCallFilter"] != "" {
		t.Errorf("mount(2) is not allowed: capabilities %q, filter %q", set["CapabilityBoundingSet"], set["SystemCallFilter"])
	}
	// Each of these, when on, makes systemd run the service in a mount
	// namespace of its own.
	for k, off := range map[string][]string{
		"ProtectSystem": {"no", ""}, "ProtectHome": {"no", ""}, "PrivateTmp": {"no", ""}, "PrivateDevices": {"no", ""},
		"ProtectKernelTunables": {"no", ""}, "ProtectKernelModules": {"no", ""}, "ProtectKernelLogs": {"no", ""},
		"ProtectControlGroups": {"no", ""}, "ProtectProc": {"default", ""}, "ProcSubset": {"all", ""},
		"PrivateMounts": {"no", ""}, "ReadWritePaths": {""}, "ReadOnlyPaths": {""}, "InaccessiblePaths": {""},
		"TemporaryFileSystem": {""}, "BindPaths": {""}, "MountFlags": {"", "shared"}, "PrivateNetwork": {"no", ""},
		"ProtectClock": {"no", ""}, "ProtectHostname": {"no", ""},
	} {
		v := set[k]
		ok := false
		for _, o := range off {
			ok = ok || v == o
		}
		if !ok {
			t.Errorf("%s=%s gives vprocd a mount namespace of its own: /cluster/proc would not be seen outside it", k, v)
		}
	}
}
