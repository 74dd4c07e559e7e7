package vprocdspec

import "github.com/openssi/openssi/internal/describe"

// The programs vprocd starts for its callers are its children (moved to a
// scope of their own in the caller's slice under systemd): they inherit
// its unit's sandbox, capability bounding set, seccomp filters and mount
// namespace. A program run with `ssi exec` must behave as one run from a
// login on that node (sudo and ping work, a JIT may map executable memory,
// /home, /tmp and /dev are the node's, root's program keeps root's
// capabilities), so the unit keeps only what those programs do not feel.
// vprocd runs as root: it sets the caller's uid, gid and groups before each
// program's exec, and signals any user's program.
var hardening = describe.Hardening{
	// Every capability: a root caller's program keeps them all (the
	// bounding set is inherited).
	Capabilities: []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
		"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
		"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
		"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
		"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
		"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
	},
	// The families programs use; a program needing another (Bluetooth,
	// vsock, CAN) cannot be run through ssi exec.
	// No RestrictAddressFamilies= (it is a seccomp filter): see
	// SystemCallArchitectures below.
	AnyAddressFamily: true,
	Set: []describe.Directive{
		// setuid programs (sudo, su, ping) must work for its callers.
		{Key: "NoNewPrivileges", Value: "no"},
		{Key: "RestrictSUIDSGID", Value: "no"},
		// The node's file systems, /tmp, /home and devices, as a login
		// sees them.
		{Key: "ProtectSystem", Value: "no"},
		{Key: "ReadWritePaths", Value: ""},
		{Key: "ProtectHome", Value: "no"},
		{Key: "PrivateTmp", Value: "no"},
		{Key: "PrivateDevices", Value: "no"},
		{Key: "DevicePolicy", Value: "auto"},
		{Key: "ProtectKernelTunables", Value: "no"},
		{Key: "ProtectKernelModules", Value: "no"},
		{Key: "ProtectKernelLogs", Value: "no"},
		{Key: "ProtectControlGroups", Value: "no"},
		{Key: "ProtectClock", Value: "no"},
		{Key: "ProtectHostname", Value: "no"},
		// Every process, to signal and watch them.
		{Key: "ProtectProc", Value: "default"},
		{Key: "ProcSubset", Value: "all"},
		// Containers, real-time schedulers, JITs, personalities.
		{Key: "RestrictNamespaces", Value: "no"},
		{Key: "RestrictRealtime", Value: "no"},
		{Key: "MemoryDenyWriteExecute", Value: "no"},
		{Key: "LockPersonality", Value: "no"},
		// A user's System V IPC is not vprocd's to remove.
		{Key: "RemoveIPC", Value: "no"},
		// No system call filter: it would bind every program.
		{Key: "SystemCallFilter", Value: ""},
		// No seccomp filter at all (SystemCallArchitectures= and
		// RestrictAddressFamilies= are filters too): criu, which vprocd
		// runs to move a program, must suspend the program's filters to
		// dump it, and the kernel refuses that to a tracer under a filter
		// of its own (a program under vprocd's filters, dumped by a criu
		// under them, never moved).
		{Key: "SystemCallArchitectures", Value: ""},
	},
	Why: "Runs as root: starts programs as their callers (sets uid, gid and groups before exec) and signals any user's program. Its programs are its children and inherit its sandbox, so it keeps only what they do not feel: a private keyring, no ambient capability; no seccomp filter (no system call, architecture or address family filter), which criu, run by vprocd to move a program, could not work under. It mounts the /cluster/proc view with FUSE (read-only but for each process's goto, which moves it): /dev/fuse is allowed (DevicePolicy=auto without DeviceAllow=, which would close the other devices to its programs), and no option gives it a mount namespace of its own, so the host sees the mount.",
	// Measured with systemd-analyze security --offline=true (systemd
	// 252) on the generated unit.
	Exposure: 9.6,
	User:     "",
	// Its own use: each exec costs a few goroutines, 32 KiB buffers, up
	// to five descriptors (three pipes or a terminal, its stream) and a
	// thread blocked in waitid(2) while its program runs. Its programs
	// count here only between their fork and their move to their scope
	// (under systemd every program gets one).
	Limits: describe.Limits{
		MemoryMaxMiB: 2048,
		TasksMax:     16384,
		NOFILE:       65536,
		Why:          "2 GiB and 16384 tasks: a thread (waitid) and well under 1 MiB per running program, for thousands of programs across uids at max_execs_per_uid 1024, over its own; 65536 descriptors: five per program. Its programs leave its cgroup for their own scope as soon as they start.",
	},
}
