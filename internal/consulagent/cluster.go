package consulagent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
)

// Profile selects the agents' failure-detection and Raft timing.
type Profile int

const (
	// Tuned applies [TunedSettings]: fast failure detection (a killed node's
	// serfHealth is critical in about a second) and raft_multiplier 1. It is
	// the zero value, so tests get it unless they ask otherwise.
	Tuned Profile = iota
	// Default keeps Consul's own defaults (probe_interval 1s, suspicion_mult
	// 4, raft_multiplier 5), for comparison.
	Default
)

// String returns "tuned" or "default".
func (p Profile) String() string {
	switch p {
	case Tuned:
		return "tuned"
	case Default:
		return "default"
	}
	return fmt.Sprintf("Profile(%d)", int(p))
}

// Options describes a cluster to start.
type Options struct {
	// Servers is the number of Consul servers (bootstrap_expect); default 3.
	Servers int
	// Clients is the number of client agents; default 0.
	Clients int
	// Profile is the timing profile; default Tuned.
	Profile Profile
	// NoConnect disables Connect (and with it the built-in CA and the agents'
	// leaf-certificate API). Connect is on by default.
	NoConnect bool
	// ACL turns Consul's ACLs on with default deny and down_policy
	// extend-cache, as the lab and the shipped example do. The cluster's
	// management token ([Cluster.ManagementToken]) is the servers' initial
	// management token and every agent's own token, and the clients of
	// [Agent.Client] send it.
	ACL bool
	// ExtraHCL is appended to every agent's configuration.
	ExtraHCL string
}

// MemberStatus is a Serf member status as reported by /v1/agent/members.
type MemberStatus int

// Serf member statuses (github.com/hashicorp/serf/serf.MemberStatus).
const (
	MemberNone MemberStatus = iota
	MemberAlive
	MemberLeaving
	MemberLeft
	MemberFailed
)

// String returns the Serf name of the status.
func (s MemberStatus) String() string {
	switch s {
	case MemberNone:
		return "none"
	case MemberAlive:
		return "alive"
	case MemberLeaving:
		return "leaving"
	case MemberLeft:
		return "left"
	case MemberFailed:
		return "failed"
	}
	return fmt.Sprintf("MemberStatus(%d)", int(s))
}

// Cluster is a running set of Consul agents.
type Cluster struct {
	// Dir holds every agent's config, data directory and log.
	Dir string
	// Options are the options the cluster was started with, defaults applied.
	Options Options
	// Subnet is the cluster's loopback network prefix, "127.A.B".
	Subnet string
	// Agents are node1..nodeN: servers first, then clients.
	Agents []*Agent
	// ManagementToken is the ACL management token when Options.ACL is set.
	ManagementToken string

	stopOnce sync.Once
}

// setupTimeout bounds StartCluster's wait for a leader and a healthy catalog.
const setupTimeout = 60 * time.Second

// StartCluster starts a cluster with its files under dir and waits until it
// is ready: a leader elected, all members alive, every node's serfHealth
// passing. The caller must call [Cluster.Stop]; tests use consultest.Start,
// which does. On error no agent is left running.
func StartCluster(dir string, opts Options) (*Cluster, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if opts.Servers == 0 {
		opts.Servers = 3
	}
	if opts.Servers < 0 || opts.Clients < 0 || opts.Servers+opts.Clients > 250 {
		return nil, fmt.Errorf("consulagent: bad cluster size: %d servers, %d clients", opts.Servers, opts.Clients)
	}
	if opts.Profile != Tuned && opts.Profile != Default {
		return nil, fmt.Errorf("consulagent: unknown profile %v", opts.Profile)
	}
	c := &Cluster{Dir: dir, Options: opts}
	if err := c.pickSubnet(bin); err != nil {
		return nil, err
	}
	if opts.ACL {
		if c.ManagementToken, err = NewSecretID(); err != nil {
			return nil, err
		}
		for _, a := range c.Agents {
			a.token = c.ManagementToken
		}
	}
	for _, a := range c.Agents {
		if err := os.MkdirAll(a.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("consulagent: %w", err)
		}
		if err := os.WriteFile(a.ConfigFile, []byte(c.agentHCL(a)), 0o600); err != nil {
			return nil, fmt.Errorf("consulagent: %w", err)
		}
	}
	errs := make([]error, len(c.Agents))
	var wg sync.WaitGroup
	for i, a := range c.Agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = a.Start()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Stop()
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := c.WaitReady(ctx); err != nil {
		var tails strings.Builder
		for _, a := range c.Agents {
			fmt.Fprintf(&tails, "---- %s ----\n%s\n", a.Name, a.LogTail(20))
		}
		c.Stop()
		return nil, fmt.Errorf("%w\n%s", err, tails.String())
	}
	return c, nil
}

// pickSubnet chooses a random 127.A.B.0/24 whose ports are all free and
// creates the Agent values.
func (c *Cluster) pickSubnet(bin string) error {
	n := c.Options.Servers + c.Options.Clients
	var last error
	for range 50 {
		subnet := fmt.Sprintf("127.%d.%d", 1+rand.IntN(254), 1+rand.IntN(254))
		agents := make([]*Agent, n)
		free := true
		for i := range agents {
			name := fmt.Sprintf("node%d", i+1)
			ip := fmt.Sprintf("%s.%d", subnet, i+1)
			agents[i] = &Agent{
				Name:       name,
				IP:         ip,
				HTTPAddr:   net.JoinHostPort(ip, fmt.Sprint(HTTPPort)),
				Server:     i < c.Options.Servers,
				DataDir:    filepath.Join(c.Dir, name, "data"),
				ConfigFile: filepath.Join(c.Dir, name, "agent.hcl"),
				LogFile:    filepath.Join(c.Dir, name, "agent.log"),
				bin:        bin,
			}
			if err := agents[i].portsFree(); err != nil {
				last, free = err, false
				break
			}
		}
		if free {
			c.Subnet, c.Agents = subnet, agents
			return nil
		}
	}
	return fmt.Errorf("consulagent: no free loopback subnet: %w", last)
}

// agentHCL renders an agent's configuration.
func (c *Cluster) agentHCL(a *Agent) string {
	var join []string
	for _, s := range c.Agents[:c.Options.Servers] {
		join = append(join, fmt.Sprintf("%q", net.JoinHostPort(s.IP, fmt.Sprint(SerfLANPort))))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node_name = %q\n", a.Name)
	fmt.Fprintf(&b, "datacenter = \"dc1\"\n")
	fmt.Fprintf(&b, "data_dir = %q\n", a.DataDir)
	fmt.Fprintf(&b, "bind_addr = %q\n", a.IP)
	fmt.Fprintf(&b, "client_addr = %q\n", a.IP)
	fmt.Fprintf(&b, "retry_join = [%s]\n", strings.Join(join, ", "))
	b.WriteString(`retry_interval = "200ms"
log_level = "warn"
leave_on_terminate = false
disable_update_check = true
enable_script_checks = false
limits {
  http_max_conns_per_client = 4096
  rpc_max_conns_per_client = 1024
}
`)
	serfWAN := -1
	if a.Server {
		serfWAN = SerfWANPort
		fmt.Fprintf(&b, "server = true\nbootstrap_expect = %d\n", c.Options.Servers)
		// A server that is only slow (a loaded test machine, aggressive
		// gossip timers) can be falsely declared failed; autopilot would
		// then drop it from the Raft voters, and killing the leader next
		// would leave no quorum. Test clusters keep their voters.
		b.WriteString("autopilot {\n  cleanup_dead_servers = false\n}\n")
		if !c.Options.NoConnect {
			b.WriteString("connect {\n  enabled = true\n}\n")
		}
	}
	fmt.Fprintf(&b, `ports {
  dns      = -1
  grpc     = -1
  grpc_tls = -1
  https    = -1
  http     = %d
  serf_lan = %d
  serf_wan = %d
  server   = %d
}
`, HTTPPort, SerfLANPort, serfWAN, ServerPort)
	if c.Options.Profile == Tuned {
		b.WriteString(TunedSettings().HCL())
	}
	if c.Options.ACL {
		b.WriteString(ACLHCL(ACLSettings{Agent: c.ManagementToken, InitialManagement: c.ManagementToken, Server: a.Server}))
	}
	if c.Options.ExtraHCL != "" {
		b.WriteString(c.Options.ExtraHCL)
		b.WriteString("\n")
	}
	return b.String()
}

// Stop kills every agent (and its process group) and waits for them to exit.
// It is idempotent.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		var wg sync.WaitGroup
		for _, a := range c.Agents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = a.Kill()
			}()
		}
		wg.Wait()
	})
}

// Agent returns the agent with the given node name, or nil.
func (c *Cluster) Agent(name string) *Agent {
	for _, a := range c.Agents {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// Servers returns the server agents.
func (c *Cluster) Servers() []*Agent { return c.Agents[:c.Options.Servers] }

// Clients returns the client agents.
func (c *Cluster) Clients() []*Agent { return c.Agents[c.Options.Servers:] }

// Running returns the agents whose process is running.
func (c *Cluster) Running() []*Agent {
	var out []*Agent
	for _, a := range c.Agents {
		if a.Running() {
			out = append(out, a)
		}
	}
	return out
}

// Client returns an API client of the first running agent (nil if none).
func (c *Cluster) Client() *api.Client {
	for _, a := range c.Agents {
		if a.Running() {
			return a.Client()
		}
	}
	return nil
}

// WaitReady waits until a leader is elected, every running agent sees every
// running agent alive, and every running node's serfHealth check is passing
// in the catalog (the point from which sessions can be created on it).
func (c *Cluster) WaitReady(ctx context.Context) error {
	if _, err := c.WaitLeader(ctx); err != nil {
		return err
	}
	var names []string
	for _, a := range c.Running() {
		names = append(names, a.Name)
	}
	if err := c.WaitMembers(ctx, MemberAlive, names...); err != nil {
		return err
	}
	for _, n := range names {
		if err := c.WaitSerfHealth(ctx, n, api.HealthPassing); err != nil {
			return err
		}
	}
	return nil
}

// WaitLeader waits until every running agent reports the same Raft leader
// and returns the leader's agent.
func (c *Cluster) WaitLeader(ctx context.Context) (*Agent, error) {
	var leader *Agent
	err := poll(ctx, 20*time.Millisecond, func() error {
		running := c.Running()
		if len(running) == 0 {
			return ErrNotRunning
		}
		var addr string
		for _, a := range running {
			l, err := a.Client().Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
			if err != nil {
				return fmt.Errorf("%s: %w", a.Name, err)
			}
			if l == "" {
				return fmt.Errorf("%s: no leader", a.Name)
			}
			if addr != "" && l != addr {
				return fmt.Errorf("leader disagreement: %s vs %s", addr, l)
			}
			addr = l
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return err
		}
		for _, a := range c.Agents {
			if a.IP == host {
				leader = a
				return nil
			}
		}
		return errStop{fmt.Errorf("leader %s is not an agent of this cluster", addr)}
	})
	if err != nil {
		return nil, fmt.Errorf("consulagent: wait leader: %w", err)
	}
	return leader, nil
}

// WaitMembers waits until every running agent's LAN member list shows each
// named node (all of the cluster's nodes when none is named) in the given
// status.
func (c *Cluster) WaitMembers(ctx context.Context, status MemberStatus, names ...string) error {
	if len(names) == 0 {
		for _, a := range c.Agents {
			names = append(names, a.Name)
		}
	}
	err := poll(ctx, 20*time.Millisecond, func() error {
		running := c.Running()
		if len(running) == 0 {
			return ErrNotRunning
		}
		for _, a := range running {
			members, err := a.Client().Agent().Members(false)
			if err != nil {
				return fmt.Errorf("%s: %w", a.Name, err)
			}
			seen := make(map[string]MemberStatus, len(members))
			for _, m := range members {
				seen[m.Name] = MemberStatus(m.Status)
			}
			for _, n := range names {
				if seen[n] != status {
					return fmt.Errorf("%s sees %s %v, want %v", a.Name, n, seen[n], status)
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("consulagent: wait members %v: %w", status, err)
	}
	return nil
}

// WaitSerfHealth waits until the catalog shows node's serfHealth check in the
// given status (api.HealthPassing, api.HealthCritical), asking any running
// agent. It uses blocking queries, so it returns within milliseconds of the
// change.
func (c *Cluster) WaitSerfHealth(ctx context.Context, node, status string) error {
	var index uint64
	err := poll(ctx, 10*time.Millisecond, func() error {
		cl := c.Client()
		if cl == nil {
			return ErrNotRunning
		}
		q := (&api.QueryOptions{WaitIndex: index, WaitTime: time.Second}).WithContext(ctx)
		checks, meta, err := cl.Health().Node(node, q)
		if err != nil {
			index = 0
			return err
		}
		index = meta.LastIndex
		for _, ch := range checks {
			if ch.CheckID == "serfHealth" {
				if ch.Status == status {
					return nil
				}
				return fmt.Errorf("serfHealth of %s is %s", node, ch.Status)
			}
		}
		return fmt.Errorf("no serfHealth check for %s", node)
	})
	if err != nil {
		return fmt.Errorf("consulagent: wait serfHealth %s %s: %w", node, status, err)
	}
	return nil
}
