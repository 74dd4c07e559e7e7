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
}

// Hardening is the sandbox of one daemon's unit: the directives that differ
// from the baseline every unit starts from (packaging.Baseline) and why.
type Hardening struct {
	// Capabilities is the capability bounding set; empty means none.
	Capabilities []string
	// AddressFamilies is RestrictAddressFamilies=.
	AddressFamilies []string
	// Set replaces (or with an empty Value removes) baseline directives
	// and appends those that are not in the baseline.
	Set []Directive
	// Why says what the daemon needs and why, for the unit and the README.
	Why string
	// Exposure is the recorded `systemd-analyze security --offline=true`
	// overall exposure of the generated unit; a check fails when the unit
	// scores worse (higher).
	Exposure float64
}

// Directive is one line of a unit's [Service] section.
type Directive struct{ Key, Value string }

// Inet is the address families of a daemon that talks to Consul and its
// peers over IP and to local clients over its Unix socket.
var Inet = []string{"AF_UNIX", "AF_INET", "AF_INET6"}
