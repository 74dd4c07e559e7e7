// Package dlmdspec describes dlmd, OpenSSI's distributed lock manager: its
// name, what it needs, its section of openssi.yaml (Config, Default,
// Validate), its flags and the sandbox of its unit. The daemon's main, the
// registry (internal/daemons) and through it packaging, `ssi status` and
// the test harnesses read it.
package dlmdspec

import (
	_ "embed" // the dlmd section of the shipped openssi.yaml
	"strconv"
	"time"

	"github.com/openssi/openssi/daemons/clmsd/clmsdspec"
	"github.com/openssi/openssi/internal/describe"
	"github.com/openssi/openssi/internal/settings"
)

// Name is the daemon's name and the key of its section.
const Name = "dlmd"

//go:embed openssi.yaml
var example string

// Daemon is dlmd's description.
var Daemon = describe.Daemon{
	Name:    Name,
	Binary:  "dlmd",
	Unit:    "openssi-dlmd.service",
	Summary: "distributed lock manager: lockspaces, six lock modes, value blocks, blocking callbacks, deadlock detection, recovery on node loss",
	About: "dlmd is OpenSSI's distributed lock manager: VMS-style locks (NL CR CW PR PW EX)\n" +
		"with value blocks and blocking callbacks, mastered across the nodes and\n" +
		"recovered when a node goes down.",
	// Masters and recovery follow clmsd's membership view.
	Needs: []string{clmsdspec.Name},
	Config: settings.NewSection(Name, Default, example,
		settings.Flag{Name: "rpc-port", Key: "rpc_port", Usage: "inter-node gRPC port"},
	),
	Hardening: describe.Hardening{
		AddressFamilies: describe.Inet,
		Why:             "Like clmsd: locks live in memory, clients on its socket, peers over TCP; no capability, runs as user openssi.",
		Exposure:        1.6,
		User:            describe.SystemUser,
		// The lock limits (max_locks_per_session/_per_uid,
		// max_pending_*) bound each uid, not the number of uids, nor
		// the locks other nodes' clients hold on resources this node
		// masters: MemoryMax is the backstop. The 100k-lock slow-reader
		// attacker test measured 7-13 MiB of heap for a session at its
		// 10,000-lock limit with 90,000 more refused, about 1.3 KiB a
		// lock at most, so a uid at max_locks_per_uid (50,000) costs
		// ~65 MiB: 1 GiB holds an idle dlmd (17 MiB resident and 9
		// threads in the packages' boot test), a dozen uids at their
		// limit and the buffers of a few thousand connections.
		// Each client session is one descriptor and gRPC's 32 KiB read
		// and 32 KiB write buffers; 8192 descriptors (~512 MiB of
		// buffers if all were sessions) leave room for 2x1023 peer
		// links and thousands of client programs. Threads: GOMAXPROCS plus those blocked in
		// a system call (network waits use the poller); it starts no
		// process.
		Limits: describe.Limits{
			MemoryMaxMiB: 1024,
			TasksMax:     1024,
			NOFILE:       8192,
			Why:          "1 GiB: a dozen uids at max_locks_per_uid (~65 MiB each at the <= 1.3 KiB a lock the attacker test measured) over an idle 17 MiB; 8192 descriptors: client sessions and 2x1023 peer links; 1024 threads: Go's, well above GOMAXPROCS.",
		},
	},
}

// Config holds the settings of the distributed lock manager (YAML
// `dlmd:`).
type Config struct {
	// RPCPort is the TCP port of dlmd's inter-node gRPC server (lock
	// traffic between nodes), 1..65535. Default 7102.
	RPCPort int `mapstructure:"rpc_port" want:"an integer 1..65535"`
	// DeadlockInterval is how often the coordinator looks for deadlocks
	// across the cluster (the VMS deadlock wait); at least 10ms. Default 1s.
	DeadlockInterval time.Duration `mapstructure:"deadlock_interval" want:"a duration of at least 10ms such as 1s"`
	// Lease is how long a node's locks stay valid without contact with a
	// majority of the UP nodes' dlmd: past it the node drops its locks
	// (clients are told), and the others wait that long after their last
	// contact with a lost node before granting what it held. The lease is
	// the cluster's: each dlmd sends its setting in its hellos, pings and
	// pongs and uses the largest setting among itself and the members it
	// has heard from (and the survivors of a lost node wait for the
	// largest of theirs and what the lost node set or used), so a node set
	// longer than the others is never granted over. A node whose setting
	// differs from the cluster's logs a warning naming both, once per
	// change, and follows the cluster's. Set the same value on every node.
	// MinLease..MaxLease (200ms..60s). Default 1s.
	Lease time.Duration `mapstructure:"lease" want:"a duration 200ms..60s such as 1s"`
	// MaxLocksPerSession bounds the locks one client session holds or
	// asks for on its node (a lock past it is refused with "too many
	// locks", the session goes on). Root is bounded too: the limits guard
	// dlmd's memory, not an access right. 1..MaxLimit. Default 10000: far
	// above what a program locks at once (a cluster daemon holds a few),
	// a few MiB of dlmd's memory.
	MaxLocksPerSession int `mapstructure:"max_locks_per_session" want:"an integer 1..10000000"`
	// MaxLocksPerUID bounds the locks the sessions of one uid hold or ask
	// for on one node, its orphans (persistent locks whose process ended)
	// included. Root is bounded too. 1..MaxLimit. Default 50000: five
	// sessions at their limit, some tens of MiB of dlmd's memory at most.
	MaxLocksPerUID int `mapstructure:"max_locks_per_uid" want:"an integer 1..10000000"`
	// MaxPendingPerSession bounds a session's requests waiting for their
	// answer (from a master on another node, or after a recovery); one
	// past it is refused with "too many requests waiting". 1..MaxLimit.
	// Default 1000: a client that pipelines keeps the links busy with far
	// fewer.
	MaxPendingPerSession int `mapstructure:"max_pending_per_session" want:"an integer 1..10000000"`
	// MaxPendingPerUID bounds the requests of one uid's sessions on a
	// node waiting for their answer. 1..MaxLimit. Default 10000: ten
	// sessions at their limit.
	MaxPendingPerUID int `mapstructure:"max_pending_per_uid" want:"an integer 1..10000000"`
	// MaxSessionsPerUID bounds the lock sessions (client connections to
	// dlmd's socket that hold a session, as each dlm.Client and each
	// `ssi lock` does) one uid has open on a node at once; one more is
	// refused with "too many sessions" (dlm.ErrLimit). Root is bounded
	// too, as by the other limits: each session costs dlmd two
	// goroutines and its queues, and no uid shares another's count.
	// 1..100000. Default 1000: far more than the programs of one user run
	// at once, some tens of MiB of dlmd's memory at most.
	MaxSessionsPerUID int `mapstructure:"max_sessions_per_uid" want:"an integer 1..100000"`
	// MaxLockspacesPerUID is how many lockspaces a non-root uid may own
	// across the cluster (created with ssi lockspace create or on first
	// use); past it, creating one fails with a clear error. 1..100000.
	// Default 64.
	MaxLockspacesPerUID int `mapstructure:"max_lockspaces_per_uid" want:"an integer 1..100000"`
	// LockspaceGrace is how long a lockspace made on first use may have
	// no lock anywhere before its record is removed (explicitly created
	// ones, and ones their owner changed, stay until deleted). 1m..168h.
	// Default 10m.
	LockspaceGrace time.Duration `mapstructure:"lockspace_grace" want:"a duration 1m..168h such as 10m"`
}

// MaxLimit is the largest value of the max_* settings.
const MaxLimit = 10_000_000

// The bounds of Lease. Below MinLease pings (every tenth of the lease)
// and scheduling hiccups would fence nodes for nothing; above MaxLease a
// lost node's locks would stay out of reach for too long (a dlmd also
// caps the settings its peers send at MaxLease).
const (
	MinLease = 200 * time.Millisecond
	MaxLease = 60 * time.Second
)

// Default returns dlmd's settings when nothing overrides them. They are
// valid as returned.
func Default() Config {
	return Config{
		RPCPort:          7102,
		DeadlockInterval: time.Second,
		Lease:            time.Second,

		MaxLocksPerSession:   10000,
		MaxLocksPerUID:       50000,
		MaxPendingPerSession: 1000,
		MaxPendingPerUID:     10000,
		MaxSessionsPerUID:    1000,
		MaxLockspacesPerUID:  64,
		LockspaceGrace:       10 * time.Minute,
	}
}

// Validate returns the first setting that is not allowed as a
// *settings.Error, or nil.
func (c *Config) Validate() error {
	return settings.Checks(Name, c,
		settings.Check{Key: "rpc_port", Value: strconv.Itoa(c.RPCPort), OK: settings.IsPort(c.RPCPort)},
		settings.Check{Key: "deadlock_interval", Value: c.DeadlockInterval.String(), OK: c.DeadlockInterval >= 10*time.Millisecond},
		settings.Check{Key: "lease", Value: c.Lease.String(), OK: c.Lease >= MinLease && c.Lease <= MaxLease},
		settings.Check{Key: "max_locks_per_session", Value: strconv.Itoa(c.MaxLocksPerSession), OK: isLimit(c.MaxLocksPerSession)},
		settings.Check{Key: "max_locks_per_uid", Value: strconv.Itoa(c.MaxLocksPerUID), OK: isLimit(c.MaxLocksPerUID)},
		settings.Check{Key: "max_pending_per_session", Value: strconv.Itoa(c.MaxPendingPerSession), OK: isLimit(c.MaxPendingPerSession)},
		settings.Check{Key: "max_pending_per_uid", Value: strconv.Itoa(c.MaxPendingPerUID), OK: isLimit(c.MaxPendingPerUID)},
		settings.Check{Key: "max_sessions_per_uid", Value: strconv.Itoa(c.MaxSessionsPerUID), OK: c.MaxSessionsPerUID >= 1 && c.MaxSessionsPerUID <= 100000},
		settings.Check{Key: "lockspace_grace", Value: c.LockspaceGrace.String(), OK: c.LockspaceGrace >= time.Minute && c.LockspaceGrace <= 168*time.Hour},
		settings.Check{Key: "max_lockspaces_per_uid", Value: strconv.Itoa(c.MaxLockspacesPerUID), OK: c.MaxLockspacesPerUID >= 1 && c.MaxLockspacesPerUID <= 100000},
	)
}

// isLimit reports whether v is a value of a max_* setting.
func isLimit(v int) bool { return v >= 1 && v <= MaxLimit }

// From returns dlmd's section of a loaded configuration (an
// internal/config *Config).
func From(c interface{ Section(name string) any }) Config {
	return settings.Of[Config](c, Name)
}
