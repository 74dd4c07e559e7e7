// Package keepalivedspec describes openssi-keepalived, OpenSSI's
// application availability daemon (the 2004 OpenSSI's spawndaemon and
// keepalive): its name, what it needs, its section of openssi.yaml
// (Config, Default, Validate) and the sandbox of its unit. Installed as
// openssi-keepalived so that it never collides with Debian's keepalived
// (VRRP). The daemon's main, the registry (internal/daemons) and through
// it packaging, `ssi status` and the test harnesses read it.
package keepalivedspec

import (
	_ "embed" // the keepalived section of the shipped openssi.yaml
	"path/filepath"
	"time"

	"github.com/openssi/openssi/daemons/clmsd/clmsdspec"
	"github.com/openssi/openssi/daemons/dlmd/dlmdspec"
	"github.com/openssi/openssi/internal/describe"
	"github.com/openssi/openssi/internal/settings"
)

// Name is the daemon's name and the key of its section.
const Name = "keepalived"

// Lockspace names the root-only dlmd lockspace of the applications'
// locks: one EX lock per application, resource its name.
const Lockspace = "openssi.keepalived"

// KV keys under openssi/: the registrations of ssi keepalive add, where
// each application runs, the moves asked for, and why a node cannot run
// an application (unfit/NAME/NODE).
const (
	KVApps  = "keepalive/apps/"
	KVRun   = "keepalive/run/"
	KVMoves = "keepalive/move/"
	KVUnfit = "keepalive/unfit/"
)

//go:embed openssi.yaml
var example string

// Daemon is openssi-keepalived's description.
var Daemon = describe.Daemon{
	Name:    Name,
	Binary:  "openssi-keepalived",
	Unit:    "openssi-keepalived.service",
	Summary: "application availability: runs each monitored application on one node, restarts it in place, moves it when it keeps failing or its node dies",
	About: "openssi-keepalived runs the applications declared in keepalived.dir\n" +
		"(/etc/openssi/keepalive.d/NAME.yaml) or registered with `ssi keepalive add`\n" +
		"(Consul KV), each as a transient systemd unit under its declared user, on\n" +
		"exactly one node: the holder of its EX lock of dlmd (lockspace\n" +
		"openssi.keepalived), chosen by its placement rule. It restarts an application\n" +
		"in place when it exits or fails its check, and starts it on the next node\n" +
		"after retries failures within its window, or when its node dies. Not\n" +
		"Debian's keepalived (VRRP).",
	// Membership from clmsd; the one-instance locks from dlmd.
	Needs:     []string{clmsdspec.Name, dlmdspec.Name},
	Config:    settings.NewSection(Name, Default, example),
	Hardening: hardening,
}

var hardening = describe.Hardening{
	// As initfailover: CAP_DAC_OVERRIDE opens the Consul agent's socket
	// and /run/openssi, both the daemons' user's. The applications and
	// their exec: checks run in transient units of their own, never
	// under this sandbox.
	Capabilities:    []string{"CAP_DAC_OVERRIDE"},
	AddressFamilies: describe.Inet,
	Why: "Runs as root: the applications' locks live in a root-only lockspace of dlmd, and systemd lets uid 0 start " +
		"transient units under any user over D-Bus: the applications and their exec: checks run in units of their own, " +
		"never in this sandbox. CAP_DAC_OVERRIDE opens the Consul agent's socket and /run/openssi. " +
		"TCP for tcp: and http: checks, ssi on its socket.",
	// Measured with systemd-analyze security --offline=true (systemd
	// 252) on the generated unit.
	Exposure: 2.1,
	User:     "",
	Limits: describe.Limits{
		MemoryMaxMiB: 256,
		TasksMax:     256,
		NOFILE:       4096,
		Why:          "256 MiB and 256 threads: a few goroutines, a dlmd session and a check per application; 4096 descriptors: those sessions, checks' connections and ssi's clients.",
	},
}

// Config holds the settings of openssi-keepalived (YAML `keepalived:`).
type Config struct {
	// Dir holds the declaration files NAME.yaml (absolute). Default
	// /etc/openssi/keepalive.d.
	Dir string `mapstructure:"dir" want:"an absolute directory path"`
	// StopTimeout is how long an application gets to stop when its node
	// loses it, as initfailover.stop_timeout for the init services: the
	// old node kills it after 3/4 of it, a node taking it over after a
	// crash or a partition starts it only after all of it. The same on
	// every node. 1s..10m. Default 10s.
	StopTimeout time.Duration `mapstructure:"stop_timeout" want:"a duration 1s..10m such as 10s"`
	// Rescan is how often the declaration files are read again. 1s..10m.
	// Default 5s.
	Rescan time.Duration `mapstructure:"rescan" want:"a duration 1s..10m such as 5s"`
}

// Default returns keepalived's settings when nothing overrides them.
func Default() Config {
	return Config{Dir: "/etc/openssi/keepalive.d", StopTimeout: 10 * time.Second, Rescan: 5 * time.Second}
}

// Validate returns the first setting that is not allowed as a
// *settings.Error, or nil.
func (c *Config) Validate() error {
	return settings.Checks(Name, c,
		settings.Check{Key: "dir", Value: c.Dir, OK: filepath.IsAbs(c.Dir) && filepath.Clean(c.Dir) == c.Dir},
		settings.Check{Key: "stop_timeout", Value: c.StopTimeout.String(), OK: c.StopTimeout >= time.Second && c.StopTimeout <= 10*time.Minute},
		settings.Check{Key: "rescan", Value: c.Rescan.String(), OK: c.Rescan >= time.Second && c.Rescan <= 10*time.Minute},
	)
}

// From returns keepalived's section of a loaded configuration.
func From(c interface{ Section(name string) any }) Config {
	return settings.Of[Config](c, Name)
}
