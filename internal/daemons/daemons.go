// Package daemons is the one list of OpenSSI's daemons. Packaging, `ssi
// status` and the lab read it, so adding a daemon to the project starts by
// adding it here.
package daemons

// Daemon describes one daemon.
type Daemon struct {
	// Name is the daemon's short name (its socket is <run_dir>/<Name>.sock).
	Name string
	// Binary is the installed program name (differs from Name where the
	// plain name would collide with another Debian package).
	Binary string
	// Unit is its systemd unit.
	Unit string
	// Summary says what it owns, for man pages and `ssi status`.
	Summary string
}

// All lists the daemons that exist, in start order.
var All = []Daemon{
	{Name: "clmsd", Binary: "clmsd", Unit: "openssi-clmsd.service", Summary: "cluster membership: node numbers, membership view, NODEUP/NODEDOWN events, clock skew"},
	{Name: "dlmd", Binary: "dlmd", Unit: "openssi-dlmd.service", Summary: "distributed lock manager: lockspaces, six lock modes, value blocks, blocking callbacks, deadlock detection, recovery on node loss"},
}

// Find returns the daemon with the given name.
func Find(name string) (Daemon, bool) {
	for _, d := range All {
		if d.Name == name {
			return d, true
		}
	}
	return Daemon{}, false
}
