// Package vprocdspec describes vprocd, OpenSSI's process management: its
// name, what it needs, its section of openssi.yaml (Config, Default,
// Validate), its flags and the sandbox of its unit. The daemon's main, the
// registry (internal/daemons) and through it packaging, `ssi status` and
// the test harnesses read it.
package vprocdspec

import (
	_ "embed" // the vprocd section of the shipped openssi.yaml
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/openssi/openssi/daemons/clmsd/clmsdspec"
	"github.com/openssi/openssi/daemons/vprocd/load"
	"github.com/openssi/openssi/internal/describe"
	"github.com/openssi/openssi/internal/settings"
)

// Name is the daemon's name and the key of its section.
const Name = "vprocd"

//go:embed openssi.yaml
var example string

// Daemon is vprocd's description.
var Daemon = describe.Daemon{
	Name:    Name,
	Binary:  "vprocd",
	Unit:    "openssi-vprocd.service",
	Summary: "process management: runs programs on any node as their caller (remote exec), streaming their stdio, signals and exit status",
	About: "vprocd runs programs on any node of the cluster as if locally (ssi exec, the\n" +
		"rexec() of client/vproc): as the uid, gid and groups its socket reports for the\n" +
		"caller, with the caller's environment and directory, stdio streamed, signals\n" +
		"forwarded, a pseudo-terminal when asked. It runs as root to start programs as\n" +
		"other users, and never runs one as root for a caller that is not. Each second it\n" +
		"measures its node's load and sends it to one peer chosen at random, to place\n" +
		"ssi exec --auto and the programs of ssi loadlevel on the least-loaded node.",
	// Which nodes exist and are UP, and who holds each number, come from
	// clmsd.
	Needs: []string{clmsdspec.Name},
	Config: settings.NewSection(Name, Default, example,
		settings.Flag{Name: "rpc-port", Key: "rpc_port", Usage: "inter-node gRPC port"},
	),
	Hardening: hardening,
}

// Config holds the settings of process management (YAML `vprocd:`).
type Config struct {
	// RPCPort is the TCP port of vprocd's inter-node gRPC server (remote
	// execs between nodes), 1..65535. Default 7103.
	RPCPort int `mapstructure:"rpc_port" want:"an integer 1..65535"`
	// MaxExecsPerUID bounds the programs one uid runs on a node at once
	// through vprocd, whatever node asked; one more is refused with
	// "too many programs". Root is bounded too: each costs vprocd a few
	// goroutines and buffers. 1..100000. Default 1024.
	MaxExecsPerUID int `mapstructure:"max_execs_per_uid" want:"an integer 1..100000"`
	// LoadLevel lists the programs (names, as argv[0]'s last element)
	// that `ssi exec` without -n places on the least-loaded node, as
	// --auto does; `ssi loadlevel add` adds more at run time. Default none.
	LoadLevel []string `mapstructure:"loadlevel" want:"a list of program names (no '/', space or control character)"`
	// ProcMount is where the FUSE view of the cluster's processes is
	// mounted (/cluster/proc/<cpid>/status, ..., goto); "" mounts
	// none. Without /dev/fuse vprocd runs on without it and warns.
	// Default /cluster/proc.
	ProcMount string `mapstructure:"proc_mount" want:"an absolute path other than /, or empty"`
	// WarmGates is how many processes vprocd keeps started ahead, each
	// already in its scope, for each caller identity that ran a
	// program here in the last minute, so that the next program of that
	// caller starts without waiting for a new process or for systemd
	// (about 5 ms less per exec). Each is an idle `openssi-vproc-gate`
	// process of that user. 0 turns it off; at most 8. Default 2.
	WarmGates int `mapstructure:"warm_gates" want:"an integer 0..8"`
	// Leveler configures the load leveler, which moves registered
	// programs from a loaded node to a less loaded one.
	Leveler Leveler `mapstructure:"leveler" want:"a mapping"`
	// Migrate configures process migration (`ssi migrate`).
	Migrate Migrate `mapstructure:"migrate" want:"a mapping"`
}

// Leveler holds the settings of the load leveler (YAML
// `vprocd.leveler:`).
type Leveler struct {
	// Enabled runs it: every Period each node moves at most one program
	// registered for load leveling (vprocd.loadlevel, `ssi loadlevel
	// add`) and migratable to a peer clearly less loaded. Default true.
	Enabled bool `mapstructure:"enabled" want:"true or false"`
	// Period is how often each node decides. 100ms..1m. Default 2s.
	Period time.Duration `mapstructure:"period" want:"a duration 100ms..1m such as 2s"`
	// CoolDown is how long a program that moved stays put. 1s..1h.
	// Default 20s.
	CoolDown time.Duration `mapstructure:"cool_down" want:"a duration 1s..1h such as 20s"`
	// Stability is the stability factor: a program moves only when the
	// peer's load plus Stability times the program's stays below this
	// node's. Above 1, at most 10. Default 1.3 (Kerrighed's).
	Stability float64 `mapstructure:"stability" want:"a number above 1, at most 10, such as 1.3"`
}

// Migrate holds the settings of process migration (YAML
// `vprocd.migrate:`).
type Migrate struct {
	// CoopStateLimit bounds the state a cooperative program hands over
	// when it moves (docs/cooperative-migration.md), in bytes: a larger
	// state fails the move. 4096..1073741824. Default 67108864 (64 MiB).
	CoopStateLimit int `mapstructure:"coop_state_limit" want:"an integer 4096..1073741824 (bytes)"`
	// ConfirmTimeout bounds the wait for the target's confirmation that
	// it restored the process; past it the move fails and the process
	// runs on where it was. 1s..10m. Default 30s.
	ConfirmTimeout time.Duration `mapstructure:"confirm_timeout" want:"a duration 1s..10m such as 30s"`
	// CRIU is the criu binary that moves unmodified programs (CRIU 4.2
	// or later whose `criu check` passes; vprocd checks it at start and
	// says in its status why it cannot use it). "" looks up criu in the
	// PATH. Default "".
	CRIU string `mapstructure:"criu" want:"an absolute path, or empty for the PATH's criu"`
}

// Default returns vprocd's settings when nothing overrides them. They are
// valid as returned.
func Default() Config {
	return Config{RPCPort: 7103, MaxExecsPerUID: 1024, LoadLevel: []string{}, ProcMount: "/cluster/proc", WarmGates: 2,
		Leveler: Leveler{Enabled: true, Period: 2 * time.Second, CoolDown: 20 * time.Second, Stability: 1.3},
		Migrate: Migrate{CoopStateLimit: 64 << 20, ConfirmTimeout: 30 * time.Second}}
}

// Validate returns the first setting that is not allowed as a
// *settings.Error, or nil.
func (c *Config) Validate() error {
	return settings.Checks(Name, c,
		settings.Check{Key: "rpc_port", Value: strconv.Itoa(c.RPCPort), OK: settings.IsPort(c.RPCPort)},
		settings.Check{Key: "max_execs_per_uid", Value: strconv.Itoa(c.MaxExecsPerUID), OK: c.MaxExecsPerUID >= 1 && c.MaxExecsPerUID <= 100000},
		loadLevelCheck(c.LoadLevel),
		settings.Check{Key: "proc_mount", Value: c.ProcMount, OK: validMount(c.ProcMount)},
		settings.Check{Key: "warm_gates", Value: strconv.Itoa(c.WarmGates), OK: c.WarmGates >= 0 && c.WarmGates <= 8},
		settings.Check{Key: "leveler.period", Value: c.Leveler.Period.String(),
			OK: c.Leveler.Period >= 100*time.Millisecond && c.Leveler.Period <= time.Minute},
		settings.Check{Key: "leveler.cool_down", Value: c.Leveler.CoolDown.String(),
			OK: c.Leveler.CoolDown >= time.Second && c.Leveler.CoolDown <= time.Hour},
		settings.Check{Key: "leveler.stability", Value: strconv.FormatFloat(c.Leveler.Stability, 'g', -1, 64),
			OK: c.Leveler.Stability > 1 && c.Leveler.Stability <= 10},
		settings.Check{Key: "migrate.coop_state_limit", Value: strconv.Itoa(c.Migrate.CoopStateLimit),
			OK: c.Migrate.CoopStateLimit >= 4096 && c.Migrate.CoopStateLimit <= 1<<30},
		settings.Check{Key: "migrate.confirm_timeout", Value: c.Migrate.ConfirmTimeout.String(),
			OK: c.Migrate.ConfirmTimeout >= time.Second && c.Migrate.ConfirmTimeout <= 10*time.Minute},
		settings.Check{Key: "migrate.criu", Value: c.Migrate.CRIU,
			OK: c.Migrate.CRIU == "" || (path.IsAbs(c.Migrate.CRIU) && path.Clean(c.Migrate.CRIU) == c.Migrate.CRIU)},
	)
}

// validMount reports whether p is "" or a clean absolute path other
// than the root.
func validMount(p string) bool {
	return p == "" || (path.IsAbs(p) && path.Clean(p) == p && p != "/")
}

// From returns vprocd's section of a loaded configuration (an
// internal/config *Config).
func From(c interface{ Section(name string) any }) Config {
	return settings.Of[Config](c, Name)
}

// loadLevelCheck checks the program names of vprocd.loadlevel.
func loadLevelCheck(names []string) settings.Check {
	for _, n := range names {
		if load.CheckProgram(n) != nil {
			return settings.Check{Key: "loadlevel", Value: n, OK: false}
		}
	}
	return settings.Check{Key: "loadlevel", Value: strings.Join(names, ","), OK: true}
}
