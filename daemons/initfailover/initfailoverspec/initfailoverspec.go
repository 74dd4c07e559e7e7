// Package initfailoverspec describes initfailover, OpenSSI's single init
// node that fails over and its clusterwide service control: its name,
// what it needs, its section of openssi.yaml (Config, Default, Validate),
// its flags and the sandbox of its unit. The daemon's main, the registry
// (internal/daemons) and through it packaging, `ssi status` and the test
// harnesses read it.
package initfailoverspec

import (
	_ "embed" // the initfailover section of the shipped openssi.yaml
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/openssi/openssi/daemons/clmsd/clmsdspec"
	"github.com/openssi/openssi/daemons/dlmd/dlmdspec"
	"github.com/openssi/openssi/internal/describe"
	"github.com/openssi/openssi/internal/settings"
)

// Name is the daemon's name and the key of its section.
const Name = "initfailover"

// Lockspace and Resource name the init lock: an EX lock of dlmd in a
// root-only system lockspace.
const (
	Lockspace = "openssi.initfailover"
	Resource  = "init"
	// IsolateResource names the lock `ssi isolate` holds in EX for its
	// whole run (in Lockspace), so that two runs never move nodes at
	// once.
	IsolateResource = "isolate"
)

//go:embed openssi.yaml
var example string

// Daemon is initfailover's description.
var Daemon = describe.Daemon{
	Name:    Name,
	Binary:  "initfailover",
	Unit:    "openssi-initfailover.service",
	Summary: "the single init node: runs the cluster's singleton services on one node and fails them over; clusterwide service control",
	About: "initfailover elects the cluster's init node with an EX lock of dlmd (lockspace\n" +
		"openssi.initfailover) and starts, on that node only, openssi-init.target and the\n" +
		"services listed in initfailover.services. When the init node dies or is cut\n" +
		"off, another node takes the role and starts them; the old one stops them before\n" +
		"the new one may start them (dlmd's lease, then initfailover.stop_timeout).\n" +
		"`ssi init move NODE` hands the role over. It also carries `ssi service` to\n" +
		"systemd on any node.",
	// Membership and node names from clmsd; the election from dlmd.
	Needs: []string{clmsdspec.Name, dlmdspec.Name},
	Config: settings.NewSection(Name, Default, example,
		settings.Flag{Name: "rpc-port", Key: "rpc_port", Usage: "inter-node gRPC port"},
	),
	Hardening: hardening,
	Units:     []describe.Unit{{Name: "openssi-init.target", Text: InitTarget}},
}

var hardening = describe.Hardening{
	// Root without CAP_DAC_OVERRIDE is refused both files it must open:
	// the Consul agent's socket (owned by the daemons' user, mode 0600)
	// and /run/openssi (the daemons' user's, 0755), where its own socket
	// goes. Seen in the lab: "dial unix /run/consul/http.sock: connect:
	// permission denied".
	Capabilities:    []string{"CAP_DAC_OVERRIDE"},
	AddressFamilies: describe.Inet,
	Why: "Runs as root: the init lock lives in a root-only lockspace of dlmd, and systemd lets uid 0 start, stop and kill " +
		"units over D-Bus (the system bus socket is reachable under ProtectSystem=strict). Its one capability, CAP_DAC_OVERRIDE, " +
		"opens the Consul agent's socket and /run/openssi, both owned by the daemons' user; ProtectSystem=strict keeps its " +
		"writes to /run/openssi and /var/lib/openssi. Peers over TCP, ssi on its socket.",
	// Measured with systemd-analyze security --offline=true (systemd
	// 252) on the generated unit; root costs it more than clmsd and
	// dlmd (1.9 before CAP_DAC_OVERRIDE).
	Exposure: 2.1,
	User:     "",
	// A few goroutines, the D-Bus connection, a dlmd session, peer links
	// and the clients of its socket.
	Limits: describe.Limits{
		MemoryMaxMiB: 256,
		TasksMax:     256,
		NOFILE:       4096,
		Why:          "256 MiB and 256 threads: it holds one lock, one D-Bus connection and its peers' links; 4096 descriptors: clients of ssi service and 2x1023 peer links.",
	},
}

// Config holds the settings of the init node (YAML `initfailover:`).
type Config struct {
	// RPCPort is the TCP port of initfailover's inter-node gRPC server
	// (moves and service control between nodes), 1..65535. Default 7107.
	RPCPort int `mapstructure:"rpc_port" want:"an integer 1..65535"`
	// Target is the systemd target started on the init node and stopped
	// elsewhere: the cluster's singleton services are the units it
	// wants. Default openssi-init.target.
	Target string `mapstructure:"target" want:"a systemd unit name ending in .target"`
	// Services lists more units started on the init node only, beside
	// the target's. Each should be PartOf the target (a drop-in will do),
	// so that systemd stops it when initfailover dies (the target
	// BindsTo initfailover): else nothing stops it until initfailover
	// restarts. initfailover warns at start of each unit of the init node
	// (listed or wanted by the target) that is not. Default none.
	Services []string `mapstructure:"services" want:"a list of systemd unit names (name.service, name.socket, ...)"`
	// StopTimeout is how long the singleton services get to stop when
	// the init node loses its role: the old init kills what still runs
	// after 3/4 of it, and a node granted the role after a crash or a
	// partition starts them only after all of it. Set it to at least the
	// services' own stop time (TimeoutStopSec), and the same on every
	// node: a new init waits its own setting, the old one kills by its
	// own. The services' TimeoutStopSec should be at most 3/4 of it:
	// when initfailover itself dies, systemd's stop (and kill) is what
	// ends them in time. 1s..10m. Default 10s.
	StopTimeout time.Duration `mapstructure:"stop_timeout" want:"a duration 1s..10m such as 10s"`
}

// Default returns initfailover's settings when nothing overrides them.
// They are valid as returned.
func Default() Config {
	return Config{RPCPort: 7107, Target: "openssi-init.target", Services: []string{}, StopTimeout: 10 * time.Second}
}

// Validate returns the first setting that is not allowed as a
// *settings.Error, or nil.
func (c *Config) Validate() error {
	return settings.Checks(Name, c,
		settings.Check{Key: "rpc_port", Value: strconv.Itoa(c.RPCPort), OK: settings.IsPort(c.RPCPort)},
		settings.Check{Key: "target", Value: c.Target, OK: CheckUnit(c.Target) == nil && strings.HasSuffix(c.Target, ".target")},
		servicesCheck(c.Services),
		settings.Check{Key: "stop_timeout", Value: c.StopTimeout.String(), OK: c.StopTimeout >= time.Second && c.StopTimeout <= 10*time.Minute},
	)
}

// Units returns every unit of the init node: the target, then the
// listed services.
func (c *Config) Units() []string { return append([]string{c.Target}, c.Services...) }

// From returns initfailover's section of a loaded configuration (an
// internal/config *Config).
func From(c interface{ Section(name string) any }) Config {
	return settings.Of[Config](c, Name)
}

func servicesCheck(names []string) settings.Check {
	for _, n := range names {
		if CheckUnit(n) != nil {
			return settings.Check{Key: "services", Value: n, OK: false}
		}
	}
	return settings.Check{Key: "services", Value: strings.Join(names, ","), OK: true}
}

// MaxUnitName is systemd's longest unit name (UNIT_NAME_MAX - 1).
const MaxUnitName = 255

// unitSuffixes are the unit types initfailover and `ssi service` act on.
var unitSuffixes = []string{".service", ".socket", ".target", ".timer", ".path", ".mount", ".automount", ".swap", ".slice", ".scope", ".device"}

// CheckUnit accepts a full systemd unit name: a name of ASCII letters,
// digits and ":-_.\@" with a known type suffix, as systemd itself accepts
// (an instance after one '@'), at most MaxUnitName bytes.
func CheckUnit(name string) error {
	if name == "" || len(name) > MaxUnitName {
		return fmt.Errorf("initfailover: unit name %.40q: want 1..%d bytes", name, MaxUnitName)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune(":-_.\\@", r)) {
			return fmt.Errorf("initfailover: unit name %q has a character systemd refuses (%q)", name, r)
		}
	}
	for _, s := range unitSuffixes {
		if stem, ok := strings.CutSuffix(name, s); ok && stem != "" && !strings.HasPrefix(stem, "@") && strings.Count(stem, "@") <= 1 && !strings.HasPrefix(name, ".") {
			return nil
		}
	}
	return fmt.Errorf("initfailover: %q is not a unit name: give its type too, e.g. %s.service", name, name)
}

// UnitName completes a unit name given on a command line as systemctl
// does: a name without a known unit type is a service (nginx ->
// nginx.service, foo.bar -> foo.bar.service). Paths are not turned into
// mount or device units. CheckUnit still judges the result.
func UnitName(arg string) string {
	if arg == "" {
		return arg
	}
	for _, s := range unitSuffixes {
		if stem, ok := strings.CutSuffix(arg, s); ok && stem != "" {
			return arg
		}
	}
	return arg + ".service"
}

// InitTarget is the text of openssi-init.target, shipped with the
// package. initfailover starts it on the init node only; the singleton
// services say WantedBy= and PartOf= it. It is bound to initfailover: a
// node whose initfailover stops or crashes stops the target (and what is
// PartOf it) at once, so a restarted initfailover never finds them
// running behind its back.
const InitTarget = `# openssi-init.target: shipped by OpenSSI (daemons/initfailover); do not edit.
# Started by openssi-initfailover.service on the cluster's init node only,
# never enabled. A singleton service goes with it:
#   [Unit]    PartOf=openssi-init.target
#   [Install] WantedBy=openssi-init.target
[Unit]
Description=OpenSSI singleton services of the init node
Documentation=man:initfailover(8)
BindsTo=openssi-initfailover.service
After=openssi-initfailover.service
`

// IsolateKeeps are the units a target must pull in (Requires=, Wants=,
// BindsTo=, Requisite=, transitively) for `ssi isolate` to move a node to
// it without --force: openssi.target keeps the daemons, Consul and the
// network, basic.target keeps D-Bus (initfailover's way to systemd) and
// the node's sockets and timers. A target without them would take the
// node out of the cluster.
var IsolateKeeps = []string{"openssi.target", "basic.target"}

// MaxIsolateTimeout bounds the time one node's isolate job may be given
// (ssi isolate --timeout).
const MaxIsolateTimeout = time.Hour

// CheckIsolateTarget accepts a unit name `ssi isolate` may move nodes to:
// a valid unit name of a target.
func CheckIsolateTarget(name string) error {
	if err := CheckUnit(name); err != nil {
		return err
	}
	if !strings.HasSuffix(name, ".target") {
		return fmt.Errorf("initfailover: %s is not a target (systemd isolates only a .target)", name)
	}
	return nil
}
