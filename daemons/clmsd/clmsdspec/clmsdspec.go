// Package clmsdspec describes clmsd, OpenSSI's cluster membership daemon:
// its name, what it needs, its section of openssi.yaml (Config, Default,
// Validate), its flags and the sandbox of its unit. The daemon's main,
// the registry (internal/daemons) and through it packaging, `ssi status`
// and the test harnesses read it.
package clmsdspec

import (
	_ "embed" // the clmsd section of the shipped openssi.yaml
	"strconv"
	"time"

	"github.com/openssi/openssi/daemons/clmsd/membership"
	"github.com/openssi/openssi/internal/describe"
	"github.com/openssi/openssi/internal/settings"
)

// Name is the daemon's name and the key of its section.
const Name = "clmsd"

//go:embed openssi.yaml
var example string

// Daemon is clmsd's description.
var Daemon = describe.Daemon{
	Name:    Name,
	Binary:  "clmsd",
	Unit:    "openssi-clmsd.service",
	Summary: "cluster membership: node numbers, membership view, NODEUP/NODEDOWN events, clock skew",
	About: "clmsd is OpenSSI's cluster membership daemon: it gives this node its number,\n" +
		"holds its membership in Consul, streams NODEUP/NODEDOWN/NODELEAVE events to\n" +
		"local subscribers and measures clock skew to the other nodes.",
	Config: settings.NewSection(Name, Default, example,
		settings.Flag{Name: "node-number", Key: "node_number", Usage: "node number 1..511, 0 = claim automatically"},
		settings.Flag{Name: "rpc-port", Key: "rpc_port", Usage: "inter-node gRPC port"},
	),
	Hardening: describe.Hardening{
		AddressFamilies: describe.Inet,
		Why:             "Consul's HTTP API, peers over TCP, its Unix socket; no capability (writes only its own state and socket), runs as user openssi.",
		Exposure:        1.6,
		User:            describe.SystemUser,
		// clmsd holds the membership of at most 511 nodes and a few
		// watchers (dlmd, ssi events, libcluster programs): an idle
		// clmsd has 17 MiB resident and 7 threads (the packages' boot
		// test), so 512 MiB only catches a leak.
		// Descriptors: Consul's HTTP connections (one per blocking
		// watch), a gRPC connection with each peer either way (up to
		// 2x1023) and the local watchers. Threads as dlmd's, with less
		// to block on.
		Limits: describe.Limits{
			MemoryMaxMiB: 512,
			TasksMax:     512,
			NOFILE:       4096,
			Why:          "512 MiB: membership of <= 511 nodes over an idle 17 MiB, a leak stops there; 4096 descriptors: Consul, 2x510 peer links, local watchers; 512 threads: Go's, well above GOMAXPROCS.",
		},
	},
}

// Config holds the settings of the cluster membership daemon (YAML
// `clmsd:`).
type Config struct {
	// NodeNumber is this node's number, 1..511. 0 means claim a free number
	// automatically on first start and keep it in <StateDir>/node. Default 0.
	NodeNumber int `mapstructure:"node_number" want:"an integer 0..511 (0 = claim automatically)"`
	// RPCPort is the TCP port of clmsd's inter-node gRPC server, 1..65535.
	// Default 7101.
	RPCPort int `mapstructure:"rpc_port" want:"an integer 1..65535"`
	// SkewThreshold is the clock offset from a peer above which a skew
	// warning is raised; it must be > 0. Default 100ms.
	SkewThreshold time.Duration `mapstructure:"skew_threshold" want:"a duration > 0 such as 100ms"`
	// SkewInterval is how often peers' clocks are sampled; it must be at
	// least 100ms. Default 5s.
	SkewInterval time.Duration `mapstructure:"skew_interval" want:"a duration of at least 100ms such as 5s"`
}

// Default returns clmsd's settings when nothing overrides them. They are
// valid as returned.
func Default() Config {
	return Config{
		NodeNumber:    0,
		RPCPort:       7101,
		SkewThreshold: 100 * time.Millisecond,
		SkewInterval:  5 * time.Second,
	}
}

// Validate returns the first setting that is not allowed as a
// *settings.Error, or nil.
func (c *Config) Validate() error {
	return settings.Checks(Name, c,
		settings.Check{Key: "node_number", Value: strconv.Itoa(c.NodeNumber), OK: c.NodeNumber >= 0 && c.NodeNumber <= membership.MaxNodeNumber},
		settings.Check{Key: "rpc_port", Value: strconv.Itoa(c.RPCPort), OK: settings.IsPort(c.RPCPort)},
		settings.Check{Key: "skew_threshold", Value: c.SkewThreshold.String(), OK: c.SkewThreshold > 0},
		settings.Check{Key: "skew_interval", Value: c.SkewInterval.String(), OK: c.SkewInterval >= 100*time.Millisecond},
	)
}

// From returns clmsd's section of a loaded configuration (an
// internal/config *Config).
func From(c interface{ Section(name string) any }) Config {
	return settings.Of[Config](c, Name)
}
