package packaging

import (
	"github.com/openssi/openssi/internal/daemons"
	"github.com/openssi/openssi/internal/describe"
)

// Directive is one line of a unit's [Service] section.
type Directive = describe.Directive

// Profile is the sandbox of one daemon's unit: the directives that differ
// from the shared baseline (see Baseline) and why. A daemon's profile is
// part of its description (its Hardening); packaging/README.md shows the
// table for people.
type Profile = describe.Hardening

// Baseline is the sandbox every unit starts from, in the order written.
// CapabilityBoundingSet, AmbientCapabilities and RestrictAddressFamilies
// come from the profile.
var Baseline = []Directive{
	{Key: "NoNewPrivileges", Value: "yes"},
	{Key: "ProtectSystem", Value: "strict"},
	{Key: "ReadWritePaths", Value: "/run/openssi /var/lib/openssi"},
	{Key: "ProtectHome", Value: "yes"},
	{Key: "PrivateTmp", Value: "yes"},
	{Key: "PrivateDevices", Value: "yes"},
	{Key: "DevicePolicy", Value: "closed"},
	{Key: "ProtectKernelTunables", Value: "yes"},
	{Key: "ProtectKernelModules", Value: "yes"},
	{Key: "ProtectKernelLogs", Value: "yes"},
	{Key: "ProtectControlGroups", Value: "yes"},
	{Key: "ProtectClock", Value: "yes"},
	{Key: "ProtectHostname", Value: "yes"},
	{Key: "ProtectProc", Value: "invisible"},
	{Key: "ProcSubset", Value: "pid"},
	{Key: "RestrictNamespaces", Value: "yes"},
	{Key: "RestrictRealtime", Value: "yes"},
	{Key: "RestrictSUIDSGID", Value: "yes"},
	{Key: "LockPersonality", Value: "yes"},
	{Key: "MemoryDenyWriteExecute", Value: "yes"},
	{Key: "RemoveIPC", Value: "yes"},
	{Key: "KeyringMode", Value: "private"},
	{Key: "UMask", Value: "0022"},
	{Key: "SystemCallArchitectures", Value: "native"},
	// @system-service less @privileged and @resources; @chown is added
	// back because the local API socket is chgrp'ed to the socket group.
	{Key: "SystemCallFilter", Value: "@system-service"},
	{Key: "SystemCallFilter", Value: "~@privileged @resources"},
	{Key: "SystemCallFilter", Value: "@chown"},
	{Key: "SystemCallErrorNumber", Value: "EPERM"},
	// Membership of the socket group lets a daemon without CAP_CHOWN hand
	// its socket to that group.
	{Key: "SupplementaryGroups", Value: "openssi"},
}

var inet = describe.Inet

// Profiles maps a daemon's Name to its sandbox: every registered daemon's
// (internal/daemons.All) and every planned one's (Planned).
var Profiles = profiles()

func profiles() map[string]Profile {
	m := map[string]Profile{}
	for n, p := range Planned {
		m[n] = p
	}
	for _, d := range daemons.All {
		m[d.Name] = d.Hardening
	}
	return m
}

// Planned holds the sandboxes decided for the daemons planned in the design
// that have no folder under daemons/ yet, so that their units can be
// checked (openssi-pkg units --all) before they exist. A daemon's profile
// moves into its description when its folder is created.
var Planned = map[string]Profile{
	"ipcd": {
		Capabilities:    []string{"CAP_IPC_OWNER", "CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"},
		AddressFamilies: inet,
		Set: []Directive{
			// FIFOs and bridged Unix sockets live wherever the
			// application puts them, /tmp and /home included, and SysV
			// objects are created for their callers.
			{Key: "ProtectSystem", Value: "full"},
			{Key: "ReadWritePaths", Value: ""},
			{Key: "ProtectHome", Value: "no"},
			{Key: "PrivateTmp", Value: "no"},
			{Key: "RemoveIPC", Value: "no"},
			{Key: "SystemCallFilter", Value: "@ipc"},
		},
		Why:      "Creates message queues, semaphores and shared memory on behalf of local callers and hands them to them (CAP_IPC_OWNER, CAP_CHOWN, CAP_FOWNER, CAP_DAC_OVERRIDE); shares the host's IPC namespace, /tmp and /home.",
		Exposure: 2.7,
	},
}
