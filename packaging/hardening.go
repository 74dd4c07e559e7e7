package packaging

// Directive is one line of a unit's [Service] section.
type Directive struct{ Key, Value string }

// Profile is the sandbox of one daemon's unit: the directives that differ
// from the shared baseline (see Baseline) and why. The table covers every
// daemon planned in DESIGN.md, not only those in internal/daemons.All, so
// adding a daemon to that list packages it with a sandbox already decided;
// packaging/README.md shows the same table for people.
type Profile struct {
	// Capabilities is the capability bounding set; empty means none.
	Capabilities []string
	// AddressFamilies is RestrictAddressFamilies=.
	AddressFamilies []string
	// Set replaces (or with an empty Value removes) baseline directives
	// and appends those that are not in the baseline.
	Set []Directive
	// Why says what the daemon needs and why, for the README.
	Why string
	// Exposure is the recorded `systemd-analyze security --offline=true`
	// overall exposure of the generated unit; a check fails when the unit
	// scores worse (higher).
	Exposure float64
}

// Baseline is the sandbox every unit starts from, in the order written.
// CapabilityBoundingSet, AmbientCapabilities and RestrictAddressFamilies
// come from the profile.
var Baseline = []Directive{
	{"NoNewPrivileges", "yes"},
	{"ProtectSystem", "strict"},
	{"ReadWritePaths", "/run/openssi /var/lib/openssi"},
	{"ProtectHome", "yes"},
	{"PrivateTmp", "yes"},
	{"PrivateDevices", "yes"},
	{"DevicePolicy", "closed"},
	{"ProtectKernelTunables", "yes"},
	{"ProtectKernelModules", "yes"},
	{"ProtectKernelLogs", "yes"},
	{"ProtectControlGroups", "yes"},
	{"ProtectClock", "yes"},
	{"ProtectHostname", "yes"},
	{"ProtectProc", "invisible"},
	{"ProcSubset", "pid"},
	{"RestrictNamespaces", "yes"},
	{"RestrictRealtime", "yes"},
	{"RestrictSUIDSGID", "yes"},
	{"LockPersonality", "yes"},
	{"MemoryDenyWriteExecute", "yes"},
	{"RemoveIPC", "yes"},
	{"KeyringMode", "private"},
	{"UMask", "0022"},
	{"SystemCallArchitectures", "native"},
	// @system-service less @privileged and @resources; @chown is added
	// back because the local API socket is chgrp'ed to the socket group.
	{"SystemCallFilter", "@system-service"},
	{"SystemCallFilter", "~@privileged @resources"},
	{"SystemCallFilter", "@chown"},
	{"SystemCallErrorNumber", "EPERM"},
	// Membership of the socket group lets a daemon without CAP_CHOWN hand
	// its socket to that group.
	{"SupplementaryGroups", "openssi"},
}

var inet = []string{"AF_UNIX", "AF_INET", "AF_INET6"}

// Profiles maps a daemon's Name (internal/daemons) to its sandbox.
var Profiles = map[string]Profile{
	"clmsd": {
		AddressFamilies: inet,
		Why:             "Consul's HTTP API, peers over TCP, its Unix socket; no capability (writes only its own state and socket).",
		Exposure:        1.9,
	},
	"dlmd": {
		AddressFamilies: inet,
		Why:             "Like clmsd: locks live in memory, clients on its socket, peers over TCP; no capability.",
		Exposure:        1.9,
	},
	"keepalived": {
		AddressFamilies: inet,
		Why:             "Starts and stops monitored applications through systemd's D-Bus API (root's bus access needs no capability); health checks over TCP.",
		Exposure:        1.9,
	},
	"initfailover": {
		AddressFamilies: inet,
		Why:             "Starts the singleton services on the init node through systemd's D-Bus API; no capability.",
		Exposure:        1.9,
	},
	"lvsd": {
		Capabilities:    []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"},
		AddressFamilies: []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET"},
		Set: []Directive{
			// IPVS and forwarding are sysctls under /proc/sys/net.
			{"ProtectKernelTunables", "no"},
			{"ReadWritePaths", "/run/openssi /var/lib/openssi /proc/sys/net"},
		},
		Why:      "Adds/moves the cluster IP and programs IPVS over netlink (CAP_NET_ADMIN), gratuitous ARP on failover (CAP_NET_RAW, AF_PACKET), binds the virtual service ports (CAP_NET_BIND_SERVICE); writes net.ipv4.vs.* and ip_forward.",
		Exposure: 2.6,
	},
	"ipcd": {
		Capabilities:    []string{"CAP_IPC_OWNER", "CAP_CHOWN", "CAP_FOWNER", "CAP_DAC_OVERRIDE"},
		AddressFamilies: inet,
		Set: []Directive{
			// FIFOs and bridged Unix sockets live wherever the
			// application puts them, /tmp and /home included, and SysV
			// objects are created for their callers.
			{"ProtectSystem", "full"},
			{"ReadWritePaths", ""},
			{"ProtectHome", "no"},
			{"PrivateTmp", "no"},
			{"RemoveIPC", "no"},
			{"SystemCallFilter", "@ipc"},
		},
		Why:      "Creates message queues, semaphores and shared memory on behalf of local callers and hands them to them (CAP_IPC_OWNER, CAP_CHOWN, CAP_FOWNER, CAP_DAC_OVERRIDE); shares the host's IPC namespace, /tmp and /home.",
		Exposure: 2.7,
	},
	"cfsd": {
		Capabilities:    []string{"CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID"},
		AddressFamilies: inet,
		Set: []Directive{
			// The FUSE mount must be visible to the host: every option
			// that gives the service its own mount namespace is off.
			{"ProtectSystem", "no"},
			{"ReadWritePaths", ""},
			{"ProtectHome", "no"},
			{"PrivateTmp", "no"},
			{"PrivateDevices", "no"},
			{"DevicePolicy", "closed"},
			{"DeviceAllow", "/dev/fuse rw"},
			{"ProtectKernelTunables", "no"},
			{"ProtectKernelLogs", "no"},
			{"ProtectControlGroups", "no"},
			{"ProtectClock", "no"},
			{"ProtectHostname", "no"},
			{"ProtectProc", ""},
			{"ProcSubset", ""},
			{"SystemCallFilter", "@mount"},
		},
		Why:      "Mounts the cluster filesystem with FUSE (/dev/fuse, CAP_SYS_ADMIN for mount(2) since NoNewPrivileges rules out setuid fusermount3) and serves files with their owners and modes (CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID); no private mount namespace, or the mount would not be seen outside the service.",
		Exposure: 4.3,
	},
	"vprocd": {
		Capabilities:    []string{"CAP_KILL", "CAP_SYS_PTRACE", "CAP_SETUID", "CAP_SETGID", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_CHECKPOINT_RESTORE", "CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH"},
		AddressFamilies: []string{"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"},
		Set: []Directive{
			// It must see and signal every process.
			{"ProtectProc", "default"},
			{"ProcSubset", "all"},
			{"ProtectHome", "read-only"},
			{"PrivateTmp", "no"},
			// CRIU checkpoints land in the state directory.
			{"SystemCallFilter", "@process @debug @setuid"},
			{"RestrictNamespaces", "no"},
		},
		Why:      "Signals any process (CAP_KILL), reads and checkpoints them with CRIU (CAP_SYS_PTRACE, CAP_CHECKPOINT_RESTORE, CAP_SYS_ADMIN, CAP_DAC_READ_SEARCH), changes priority and limits (CAP_SYS_NICE, CAP_SYS_RESOURCE), starts remote execs as their caller (CAP_SETUID/SETGID). The programs it starts must not inherit this sandbox: it starts them as transient units through systemd's D-Bus API, never as its own children.",
		Exposure: 4.4,
	},
}
