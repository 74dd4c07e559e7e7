package consulagent

import (
	"fmt"
	"time"
)

// Tuning is the failure-detection and Raft timing of a Consul agent. The lab
// and the packaged default config lay down the same settings as the tests, so
// they read them from [TunedSettings] instead of copying numbers.
type Tuning struct {
	// ProbeInterval is gossip_lan.probe_interval: how often memberlist probes
	// one random peer (Consul default 1s).
	ProbeInterval time.Duration
	// ProbeTimeout is gossip_lan.probe_timeout: how long a direct probe waits
	// for its ack before indirect probes start; must stay well above the
	// network RTT (Consul default 500ms).
	ProbeTimeout time.Duration
	// GossipInterval is gossip_lan.gossip_interval: how often queued
	// broadcasts (such as "node X is suspect/dead") are sent (default 200ms).
	GossipInterval time.Duration
	// SuspicionMult is gossip_lan.suspicion_mult: a suspect node is declared
	// dead after SuspicionMult*max(1,log10(N))*ProbeInterval (default 4). At 2
	// memberlist needs no independent confirmations, so that minimum applies.
	SuspicionMult int
	// RetransmitMult is gossip_lan.retransmit_mult: each broadcast goes to
	// RetransmitMult*ceil(log10(N+1)) peers in all (default 4). It must stay
	// at 4: with no confirmations needed (SuspicionMult 2), a live node
	// accused by a stale view (a node rejoining after a partition pushes
	// "everyone else is dead", which its peer turns into suspicions) has
	// 200ms to refute, and a refutation sent to only 2 of 4 peers misses
	// the accuser often enough that it declares the node failed. Its later
	// "dead" is older than the refutation, so nothing contradicts it: the
	// node stays failed in the accuser's view (and, if the accuser is the
	// Raft leader, its serfHealth critical) until a push/pull, up to 30s.
	RetransmitMult int
	// RaftMultiplier is performance.raft_multiplier: scales Raft's heartbeat
	// and election timeouts (default 5; 1 is the production recommendation).
	RaftMultiplier int
	// RPCHoldTimeout is performance.rpc_hold_timeout: how long a server
	// holds a request while there is no leader. It retries in steps of a
	// sixteenth of it, so Consul's 7s default answers up to ~440ms after a
	// new leader is elected; 1s answers within ~60ms (requests that outlast
	// an election fail with "No cluster leader" and are retried by the
	// caller).
	RPCHoldTimeout time.Duration
}

// TunedSettings returns the fast failure-detection profile OpenSSI uses: a
// SIGKILLed node's serfHealth check goes critical, and the sessions tied to
// it are invalidated, in well under two seconds on a LAN. The price is more
// gossip traffic (a probe every 100ms per agent), which is negligible on the
// small clusters OpenSSI targets.
func TunedSettings() Tuning {
	return Tuning{
		ProbeInterval:  100 * time.Millisecond,
		ProbeTimeout:   50 * time.Millisecond,
		GossipInterval: 20 * time.Millisecond,
		SuspicionMult:  2,
		RetransmitMult: 4,
		RaftMultiplier: 1,
		RPCHoldTimeout: time.Second,
	}
}

// HCL renders the settings as Consul agent configuration (HCL), ready to be
// written into a file under the agent's -config-dir.
func (t Tuning) HCL() string {
	return fmt.Sprintf(`gossip_lan {
  probe_interval  = %q
  probe_timeout   = %q
  gossip_interval = %q
  suspicion_mult  = %d
  retransmit_mult = %d
}
performance {
  raft_multiplier  = %d
  rpc_hold_timeout = %q
}
`, t.ProbeInterval, t.ProbeTimeout, t.GossipInterval, t.SuspicionMult, t.RetransmitMult, t.RaftMultiplier, t.RPCHoldTimeout)
}
