package cfsdspec

import "github.com/openssi/openssi/internal/describe"

// cfsd serves files as their callers and mounts with FUSE: it runs as
// root, with the capabilities a file system server needs and no option
// that would give it a mount namespace of its own (the mounts must be the
// node's).
var hardening = describe.Hardening{
	Capabilities: []string{
		// mount(2) of the FUSE mounts: NoNewPrivileges rules out the
		// setuid fusermount3.
		"CAP_SYS_ADMIN",
		// open_by_handle_at(2), how a handle is opened.
		"CAP_DAC_READ_SEARCH",
		// setfsuid, setfsgid and setgroups, to act as each caller.
		"CAP_SETUID", "CAP_SETGID",
		// What a root caller may do to files: the server acts with its
		// own capabilities for uid 0.
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_MKNOD",
	},
	AddressFamilies: describe.Inet,
	Set: []describe.Directive{
		// Exports and mounts may be anywhere (/home, /srv, /cluster),
		// and the mounts must be seen outside the service: no option
		// that makes a mount namespace of its own.
		{Key: "ProtectSystem", Value: "no"},
		{Key: "ReadWritePaths", Value: ""},
		{Key: "ProtectHome", Value: "no"},
		{Key: "PrivateTmp", Value: "no"},
		{Key: "PrivateDevices", Value: "no"},
		{Key: "DeviceAllow", Value: "/dev/fuse rw"},
		{Key: "ProtectKernelTunables", Value: "no"},
		{Key: "ProtectKernelModules", Value: "no"},
		{Key: "ProtectKernelLogs", Value: "no"},
		{Key: "ProtectControlGroups", Value: "no"},
		{Key: "ProtectClock", Value: "no"},
		{Key: "ProtectHostname", Value: "no"},
		// A caller's groups are read from /proc/<pid>/status, whoever
		// the caller is.
		{Key: "ProtectProc", Value: ""},
		{Key: "ProcSubset", Value: ""},
		// Users make set-user-ID files on the cluster filesystem as on
		// a local one.
		{Key: "RestrictSUIDSGID", Value: "no"},
		// mount(2), and what @privileged removed that a file server
		// needs: open_by_handle_at(2) and the caller's identity
		// (setfsuid, setgroups; setfsgid is @system-service's).
		{Key: "SystemCallFilter", Value: "@mount open_by_handle_at setfsuid setgroups"},
	},
	Why: "Runs as root: serves files as their callers (setfsuid, setfsgid, setgroups: CAP_SETUID, CAP_SETGID), opens them by handle (open_by_handle_at: CAP_DAC_READ_SEARCH) and does for root callers what root may (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_MKNOD); mounts every export with FUSE (/dev/fuse, CAP_SYS_ADMIN for mount(2), since NoNewPrivileges rules out the setuid fusermount3). No option gives it a mount namespace of its own, or its mounts would not be the node's; exports and mounts may be anywhere, and set-user-ID files may be made on them.",
	// Measured with systemd-analyze security --offline=true (systemd
	// 252) on the generated unit.
	Exposure: 5.0,
	User:     "",
	Limits: describe.Limits{
		MemoryMaxMiB: 1024,
		TasksMax:     4096,
		NOFILE:       65536,
		Why:          "1 GiB and 4096 threads: a thread per file operation in flight (each done as its caller on a thread of its own), 1 MiB reads and writes; 65536 descriptors: the files clients keep open, at most 16384 per client node.",
	},
}
