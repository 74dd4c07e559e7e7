// Package daemons is the one list of OpenSSI's daemons: each registers
// here with the description its own package under daemons/<name>/ gives
// (see internal/describe). Packaging, `ssi status`, the configuration
// loader and the test harnesses read the list, so adding a daemon to the
// project is its folder, its description and one line in [All].
package daemons

import (
	"fmt"
	"strings"

	"github.com/openssi/openssi/daemons/cfsd/cfsdspec"
	"github.com/openssi/openssi/daemons/clmsd/clmsdspec"
	"github.com/openssi/openssi/daemons/dlmd/dlmdspec"
	"github.com/openssi/openssi/daemons/initfailover/initfailoverspec"
	"github.com/openssi/openssi/daemons/keepalived/keepalivedspec"
	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/daemons/vprocd/vprocdspec"
	"github.com/openssi/openssi/internal/describe"
	"github.com/openssi/openssi/internal/settings"
)

// Daemon describes one daemon.
type Daemon = describe.Daemon

// All lists the daemons that exist, in start order: a daemon comes after
// the daemons it needs.
var All = []Daemon{
	clmsdspec.Daemon,
	dlmdspec.Daemon,
	vprocdspec.Daemon,
	initfailoverspec.Daemon,
	keepalivedspec.Daemon,
	lvsdspec.Daemon,
	cfsdspec.Daemon,
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

// Sections returns every daemon's section of openssi.yaml, in the order
// of All: what internal/config's Load needs to read a node's file.
func Sections() []settings.Section {
	s := make([]settings.Section, len(All))
	for i, d := range All {
		s[i] = d.Config
	}
	return s
}

// Check reports the first inconsistency of a list of daemons: a name used
// twice or not fit for a file name, a unit not named openssi-<name>.service,
// a section not named after its daemon, a need that is not an earlier
// daemon of the list.
func Check(list []Daemon) error {
	seen := map[string]bool{}
	for _, d := range list {
		switch {
		case d.Name == "" || strings.ContainsAny(d.Name, "/. \t") || d.Name != strings.ToLower(d.Name):
			return fmt.Errorf("daemons: name %q is not a short lower-case name", d.Name)
		case seen[d.Name]:
			return fmt.Errorf("daemons: %s is listed twice", d.Name)
		case d.Binary == "" || d.Summary == "" || d.About == "":
			return fmt.Errorf("daemons: %s lacks a binary, summary or about text", d.Name)
		case d.Unit != "openssi-"+d.Name+".service":
			return fmt.Errorf("daemons: %s: unit %q is not openssi-%s.service", d.Name, d.Unit, d.Name)
		case d.Config.Name != d.Name:
			return fmt.Errorf("daemons: %s: its configuration section is named %q", d.Name, d.Config.Name)
		case d.Hardening.Why == "" || (len(d.Hardening.AddressFamilies) == 0) == !d.Hardening.AnyAddressFamily || d.Hardening.Exposure <= 0:
			return fmt.Errorf("daemons: %s: its hardening profile lacks the reason, the address families or the exposure", d.Name)
		}
		for _, n := range d.Needs {
			if !seen[n] {
				return fmt.Errorf("daemons: %s needs %s, which is not listed before it", d.Name, n)
			}
		}
		seen[d.Name] = true
	}
	return nil
}
