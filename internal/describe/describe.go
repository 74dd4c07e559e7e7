// Package describe is the shape of a daemon's description: the one place
// that says what a daemon is called, what it needs, how it is configured
// and how its unit is sandboxed. Each daemon's own package under
// daemons/<name>/ fills in a [Daemon]; internal/daemons lists them; the
// start-up code, `ssi status`, the packages, the shipped configuration
// file and the test harnesses all read that list.
package describe

import "github.com/openssi/openssi/internal/settings"

// Daemon describes one daemon.
type Daemon struct {
	// Name is the daemon's short name: its folder daemons/<Name>, its
	// section of openssi.yaml and its socket <run_dir>/<Name>.sock.
	Name string
	// Binary is the installed program name (differs from Name where the
	// plain name would collide with another Debian package).
	Binary string
	// Unit is its systemd unit, openssi-<Name>.service.
	Unit string
	// Summary says in one line what it owns, for man pages, the unit's
	// Description= and `ssi status`.
	Summary string
	// About is the paragraph its --help prints under the usage line.
	About string
	// Needs names the daemons of the same node it cannot work without
	// (dlmd needs clmsd): its unit is ordered after and wants theirs, and
	// they come earlier in the registry.
	Needs []string
	// Config is its section of openssi.yaml: its own Config struct with
	// its defaults, validation and flags.
	Config settings.Section
	// Hardening is the sandbox of its unit.
	Hardening Hardening
	// Units are other systemd units it ships beside its service (a target
	// of its own, such as initfailover's openssi-init.target): installed
	// with the package, never enabled by it.
	Units []Unit
}

// Unit is a systemd unit file a daemon ships: its name and its text.
type Unit struct{ Name, Text string }

// Hardening is the sandbox of one daemon's unit: the directives that differ
// from the baseline every unit starts from (packaging.Baseline) and why.
type Hardening struct {
	// Capabilities is the capability bounding set; empty means none.
	Capabilities []string
	// AddressFamilies is RestrictAddressFamilies=.
	AddressFamilies []string
	// AnyAddressFamily: no RestrictAddressFamilies= at all (it is a
	// seccomp filter: vprocd must run under none), in place of
	// AddressFamilies.
	AnyAddressFamily bool
	// Set replaces (or with an empty Value removes) baseline directives
	// and appends those that are not in the baseline.
	Set []Directive
	// Why says what the daemon needs and why, for the unit and the README.
	Why string
	// Exposure is the recorded `systemd-analyze security --offline=true`
	// overall exposure of the generated unit; a check fails when the unit
	// scores worse (higher).
	Exposure float64
	// User is the system user (and group of the same name) the daemon runs
	// as; systemd then hands it /run/openssi and /var/lib/openssi
	// (RuntimeDirectory=, StateDirectory=). "" runs it as root: only for a
	// daemon that must act as other users (vprocd).
	User string
	// Limits bound what the daemon may take of the node.
	Limits Limits
}

// Limits are a unit's resource bounds: a backstop under the daemon's own
// limits (a daemon past one is killed and restarted by systemd, or refused
// a thread or a descriptor), so each is set well above what the daemon
// needs at its configured limits, and the reason is kept beside it. Zero
// leaves systemd's default.
type Limits struct {
	// MemoryMaxMiB is MemoryMax= in MiB; GOMEMLIMIT is set to 3/4 of it
	// so that Go's collector works harder before the kernel kills.
	MemoryMaxMiB int
	// TasksMax is TasksMax=: the daemon's threads (it starts no process).
	TasksMax int
	// NOFILE is LimitNOFILE=: sockets (local clients, peers, Consul) and
	// files.
	NOFILE int
	// Why says how the values were chosen.
	Why string
}

// Directive is one line of a unit's [Service] section.
type Directive struct{ Key, Value string }

// SystemUser is the dedicated system user, and group, of the daemons that
// need no privilege (clmsd, dlmd). The group is also the local sockets'
// (cluster.socket_group): it lets its members use ssi and grants nothing
// else, since the daemons keep their state in a directory only the user
// reads.
const SystemUser = "openssi"

// Inet is the address families of a daemon that talks to Consul and its
// peers over IP and to local clients over its Unix socket.
var Inet = []string{"AF_UNIX", "AF_INET", "AF_INET6"}
