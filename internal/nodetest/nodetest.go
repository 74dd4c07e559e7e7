// Package nodetest runs OpenSSI nodes for integration tests and benchmarks:
// each node is a real Consul agent (from internal/consulagent) with a real
// clmsd process and the other daemons it is given (Options.Dlmd,
// Options.Binaries) next to it, on its own loopback address, started in the
// order of internal/daemons.All. Nothing is mocked.
package nodetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/daemons/clmsd/clmsdspec"
	"github.com/openssi/openssi/daemons/dlmd/dlmdspec"
	"github.com/openssi/openssi/internal/consulacl"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/internal/consultest"
	"github.com/openssi/openssi/internal/daemons"
	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// Options describe the nodes to start.
type Options struct {
	// Consul is the Consul cluster (one node per agent).
	Consul consulagent.Options
	// Clmsd is the clmsd binary; BuildClmsd makes one.
	Clmsd string
	// ExtraYAML is appended to every node's openssi.yaml. Without a
	// vprocd section of its own, vprocd mounts no /cluster/proc: the
	// nodes share the host's mount table.
	ExtraYAML string
	// RPCPort is clmsd's inter-node port on each node's own IP. Default
	// clmsd's.
	RPCPort int
	// Dlmd is the dlmd binary (BuildDlmd makes one); when set, every node
	// also runs dlmd and StartCluster waits until each serves.
	Dlmd string
	// DlmdRPCPort is dlmd's inter-node port. Default dlmd's.
	DlmdRPCPort int
	// Binaries maps the name of any other registered daemon to its binary
	// (Build makes one): every node runs it too, after clmsd, in the order
	// of internal/daemons.All, and StartCluster waits until each serves.
	Binaries map[string]string
	// NodeTokens (with Consul.ACL) gives each node the token the lab and
	// the administrator's procedure give it: the policy of
	// internal/consulacl for its Consul node name and number, node i+1
	// pinned with clmsd.node_number, its secret in a 0600 file named by
	// cluster.consul.token_file; and its root token (consulacl.RootRules,
	// the root daemons' peer keys) in cluster.consul.root_token_file.
	// Without it no root token is read.
	NodeTokens bool
	// AutoNumbers (with NodeTokens) leaves the node numbers to clmsd's
	// automatic numbering and gives the tokens the policy for it (number 0).
	AutoNumbers bool
}

// binaries returns every daemon binary of o by daemon name.
func (o Options) binaries() map[string]string {
	b := map[string]string{}
	for n, bin := range o.Binaries {
		b[n] = bin
	}
	if o.Clmsd != "" {
		b[clmsdspec.Name] = o.Clmsd
	}
	if o.Dlmd != "" {
		b[dlmdspec.Name] = o.Dlmd
	}
	return b
}

// Cluster is a set of nodes.
type Cluster struct {
	Consul *consulagent.Cluster
	Nodes  []*Node
	opts   Options
}

// Node is one node: a Consul agent and its daemons.
type Node struct {
	Agent      *consulagent.Agent
	Dir        string
	ConfigFile string
	RunDir     string
	StateDir   string
	// LogFile is clmsd's log.
	LogFile string
	// DlmdLogFile is dlmd's log.
	DlmdLogFile string
	// Token is the node's ACL token (Options.NodeTokens), "" otherwise.
	Token string
	// RootToken is the node's root token (Options.NodeTokens), ""
	// otherwise.
	RootToken string

	// procs are the node's daemons that run, in start order.
	procs []*proc
}

// BuildClmsd builds clmsd from this module into dir and returns its path.
func BuildClmsd(dir string) (string, error) { return Build(dir, clmsdspec.Name) }

// BuildDlmd builds dlmd from this module into dir and returns its path.
func BuildDlmd(dir string) (string, error) { return Build(dir, dlmdspec.Name) }

// Build builds the registered daemon from daemons/<daemon> of this module
// into dir and returns its path.
func Build(dir, daemon string) (string, error) {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	out := filepath.Join(dir, daemon)
	cmd := exec.Command("go", "build", "-o", out, "./daemons/"+daemon)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("nodetest: build %s: %v\n%s", daemon, err, b)
	}
	return out, nil
}

// Start starts the nodes for a test: Consul agents first, then a clmsd on
// each, and waits until every node sees every other UP, then the other
// daemons given, each waited for until it serves. Teardown is
// registered with t.Cleanup; when the test failed the tail of every log is
// printed. Without a consul binary the test is skipped, or under CI failed
// (see consultest.Need).
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	consultest.Need(t)
	c, err := StartCluster(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range c.Nodes {
				for _, p := range n.procs {
					t.Logf("--- %s log of %s ---\n%s", p.name, n.Agent.Name, tail(p.log, 40))
				}
				t.Logf("--- consul log of %s ---\n%s", n.Agent.Name, n.Agent.LogTail(15))
			}
		}
		c.Stop()
	})
	return c
}

// StartCluster is Start outside package testing; the caller must Stop.
func StartCluster(dir string, opts Options) (*Cluster, error) {
	if opts.RPCPort == 0 {
		opts.RPCPort = clmsdspec.Default().RPCPort
	}
	if opts.DlmdRPCPort == 0 {
		opts.DlmdRPCPort = dlmdspec.Default().RPCPort
	}
	bins := opts.binaries()
	for name := range bins {
		if _, ok := daemons.Find(name); !ok {
			return nil, fmt.Errorf("nodetest: no daemon %q in internal/daemons.All", name)
		}
	}
	cc, err := consulagent.StartCluster(filepath.Join(dir, "consul"), opts.Consul)
	if err != nil {
		return nil, err
	}
	c := &Cluster{Consul: cc, opts: opts}
	if opts.NodeTokens && !opts.Consul.ACL {
		c.Stop()
		return nil, fmt.Errorf("nodetest: NodeTokens needs Consul.ACL")
	}
	for i, a := range cc.Agents {
		n := &Node{Agent: a, Dir: filepath.Join(dir, a.Name)}
		n.RunDir = filepath.Join(n.Dir, "run")
		n.StateDir = filepath.Join(n.Dir, "state")
		n.ConfigFile = filepath.Join(n.Dir, "openssi.yaml")
		n.LogFile = filepath.Join(n.Dir, clmsdspec.Name+".log")
		n.DlmdLogFile = filepath.Join(n.Dir, dlmdspec.Name+".log")
		for _, d := range daemons.All {
			if bin, ok := bins[d.Name]; ok {
				n.procs = append(n.procs, &proc{name: d.Name, bin: bin, log: filepath.Join(n.Dir, d.Name+".log")})
			}
		}
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			c.Stop()
			return nil, err
		}
		tokenYAML, clmsdYAML := "\n    root_token_file: \"\"", ""
		if opts.NodeTokens {
			file := filepath.Join(n.Dir, "consul.token")
			number := i + 1
			if opts.AutoNumbers {
				number = 0
			}
			if n.Token, err = nodeToken(cc, a.Name, number, file); err != nil {
				c.Stop()
				return nil, err
			}
			rootFile := filepath.Join(n.Dir, "consul-root.token")
			if n.RootToken, err = rootToken(cc, a.Name, rootFile); err != nil {
				c.Stop()
				return nil, err
			}
			tokenYAML = "\n    token_file: " + file + "\n    root_token_file: " + rootFile
			clmsdYAML = fmt.Sprintf("\n  node_number: %d", number)
		}
		cfg := fmt.Sprintf(`cluster:
  run_dir: %s
  state_dir: %s
  socket_group: ""
  advertise_address: %s
  consul:
    address: %s%s
clmsd:
  rpc_port: %d
  skew_interval: 500ms%s
dlmd:
  rpc_port: %d
  deadlock_interval: 200ms
%s%s`, n.RunDir, n.StateDir, a.IP, a.HTTPAddr, tokenYAML, opts.RPCPort, clmsdYAML, opts.DlmdRPCPort, noProcMount(opts.ExtraYAML), opts.ExtraYAML)
		if err := os.WriteFile(n.ConfigFile, []byte(cfg), 0o644); err != nil {
			c.Stop()
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := n.StartClmsd(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitAllUp(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	for _, d := range daemons.All {
		if _, ok := bins[d.Name]; !ok || d.Name == clmsdspec.Name {
			continue
		}
		for _, n := range c.Nodes {
			if err := n.StartDaemon(d.Name); err != nil {
				c.Stop()
				return nil, err
			}
		}
		for _, n := range c.Nodes {
			if err := n.WaitServing(ctx, d.Name); err != nil {
				c.Stop()
				return nil, err
			}
		}
	}
	return c, nil
}

// nodeToken creates the policy and token of node name, number, with the
// cluster's management token, and writes the token's secret to file.
func nodeToken(cc *consulagent.Cluster, name string, number int, file string) (string, error) {
	rules, err := consulacl.NodeRules(name, number)
	if err != nil {
		return "", fmt.Errorf("nodetest: %w", err)
	}
	return policyToken(cc, &api.ACLPolicy{Name: consulacl.PolicyName(name), Rules: rules}, "OpenSSI daemons of "+name, file)
}

// rootToken creates the root policy and token of node name and writes the
// token's secret to file.
func rootToken(cc *consulagent.Cluster, name, file string) (string, error) {
	rules, err := consulacl.RootRules(name)
	if err != nil {
		return "", fmt.Errorf("nodetest: %w", err)
	}
	return policyToken(cc, &api.ACLPolicy{Name: consulacl.RootPolicyName(name), Rules: rules}, "OpenSSI root daemons of "+name, file)
}

// policyToken creates policy and a new token carrying it, and writes the
// token's secret to file.
func policyToken(cc *consulagent.Cluster, policy *api.ACLPolicy, description, file string) (string, error) {
	secret, err := consulagent.NewSecretID()
	if err != nil {
		return "", err
	}
	if err := consulagent.CreatePolicyToken(cc.Client().ACL(), nil, policy, secret, description); err != nil {
		return "", fmt.Errorf("nodetest: %w", err)
	}
	if err := os.WriteFile(file, []byte(secret+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("nodetest: %w", err)
	}
	return secret, nil
}

// Stop kills every process of the cluster.
func (c *Cluster) Stop() {
	for _, n := range c.Nodes {
		n.killDaemons()
	}
	c.Consul.Stop()
}

// WaitAllUp waits until every node whose clmsd runs sees all of them UP.
func (c *Cluster) WaitAllUp(ctx context.Context) error {
	var running []*Node
	for _, n := range c.Nodes {
		if n.ClmsdRunning() {
			running = append(running, n)
		}
	}
	for _, n := range running {
		if err := n.WaitFor(ctx, "all nodes UP", func(v cluster.View) bool {
			up := 0
			for _, m := range v.Nodes {
				if m.State == cluster.Up {
					up++
				}
			}
			return up >= len(running)
		}); err != nil {
			return err
		}
	}
	return nil
}

// Socket returns the node's clmsd socket.
func (n *Node) Socket() string { return cluster.SocketIn(n.RunDir) }

// Client connects to the node's clmsd.
func (n *Node) Client(ctx context.Context) (*cluster.Client, error) {
	return cluster.New(ctx, cluster.WithSocket(n.Socket()))
}

// proc returns the node's process of the daemon named name, or nil.
func (n *Node) proc(name string) *proc {
	for _, p := range n.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// StartDaemon starts the node's daemon named name (what it needs should
// run).
func (n *Node) StartDaemon(name string) error {
	p := n.proc(name)
	if p == nil {
		return fmt.Errorf("nodetest: %s: no %s binary in the Options", n.Agent.Name, name)
	}
	return p.start(n.ConfigFile)
}

// StopDaemon stops the node's daemon named name with SIGTERM.
func (n *Node) StopDaemon(name string) error { return n.proc(name).signal(syscall.SIGTERM) }

// KillDaemon SIGKILLs the node's daemon named name.
func (n *Node) KillDaemon(name string) error { return n.proc(name).signal(syscall.SIGKILL) }

// DaemonRunning tells whether the node's daemon named name runs.
func (n *Node) DaemonRunning(name string) bool { return n.proc(name).running() }

// DaemonSocket returns the local API socket of the node's daemon named
// name.
func (n *Node) DaemonSocket(name string) string { return filepath.Join(n.RunDir, name+".sock") }

// killDaemons SIGKILLs the node's daemons, the last started first.
func (n *Node) killDaemons() {
	for i := len(n.procs) - 1; i >= 0; i-- {
		_ = n.procs[i].signal(syscall.SIGKILL)
	}
}

// StartClmsd starts the node's clmsd (its agent must run).
func (n *Node) StartClmsd() error { return n.StartDaemon(clmsdspec.Name) }

// ClmsdRunning tells whether the node's clmsd process runs.
func (n *Node) ClmsdRunning() bool { return n.DaemonRunning(clmsdspec.Name) }

// WaitClmsdExit waits for the clmsd process to exit and returns its exit
// error (an *exec.ExitError for a non-zero status).
func (n *Node) WaitClmsdExit(ctx context.Context) error { return n.proc(clmsdspec.Name).wait(ctx) }

// KillClmsd SIGKILLs the node's clmsd.
func (n *Node) KillClmsd() error { return n.KillDaemon(clmsdspec.Name) }

// StopClmsd stops the node's clmsd with SIGTERM (a graceful leave).
func (n *Node) StopClmsd() error { return n.StopDaemon(clmsdspec.Name) }

// Kill is a power loss: SIGKILL of the agent and every daemon together.
func (n *Node) Kill() error {
	errc := make(chan error, 1)
	go func() { errc <- n.Agent.Kill() }()
	n.killDaemons()
	return <-errc
}

// Start boots a killed node again: its agent, then its daemons in start
// order.
func (n *Node) Start() error {
	if err := n.Agent.Start(); err != nil {
		return err
	}
	for _, p := range n.procs {
		if err := p.start(n.ConfigFile); err != nil {
			return err
		}
	}
	return nil
}

// DlmdSocket returns the node's dlmd socket.
func (n *Node) DlmdSocket() string { return n.DaemonSocket(dlmdspec.Name) }

// StartDlmd starts the node's dlmd (its clmsd should run).
func (n *Node) StartDlmd() error { return n.StartDaemon(dlmdspec.Name) }

// KillDlmd SIGKILLs the node's dlmd.
func (n *Node) KillDlmd() error { return n.KillDaemon(dlmdspec.Name) }

// StopDlmd stops the node's dlmd with SIGTERM.
func (n *Node) StopDlmd() error { return n.StopDaemon(dlmdspec.Name) }

// DlmdRunning tells whether the node's dlmd process runs.
func (n *Node) DlmdRunning() bool { return n.DaemonRunning(dlmdspec.Name) }

// WaitDlmd waits until the node's dlmd serves (it has finished its first
// recovery).
func (n *Node) WaitDlmd(ctx context.Context) error { return n.WaitServing(ctx, dlmdspec.Name) }

// WaitServing waits until the node's daemon named name serves: grpc
// health SERVING on its socket, which a daemon reports once ready.
func (n *Node) WaitServing(ctx context.Context, name string) error {
	p := n.proc(name)
	var last error
	for {
		conn, err := localapi.Dial(ctx, n.DaemonSocket(name))
		if err == nil {
			var r *healthpb.HealthCheckResponse
			r, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			conn.Close()
			if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
				return nil
			}
			if err == nil {
				err = fmt.Errorf("%s %s", name, r.GetStatus())
			}
		}
		last = err
		if !p.running() {
			return fmt.Errorf("nodetest: %s: %s exited: %v\n%s", n.Agent.Name, name, last, tail(p.log, 20))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodetest: %s: waiting for %s: %v", n.Agent.Name, name, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// DlmMasters asks the node's dlmd which node masters each resource of
// lockspace, through the local API's Locks (as `ssi locks` does: dlmd
// gathers the resources from every master). Only resources with locks are
// listed. A node that did not answer is an error.
func (n *Node) DlmMasters(ctx context.Context, lockspace string) (map[string]uint32, error) {
	conn, err := localapi.Dial(ctx, n.DlmdSocket())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	r, err := dlmv1.NewDlmClient(conn).Locks(ctx, &dlmv1.LocksRequest{Lockspace: lockspace})
	if err != nil {
		return nil, fmt.Errorf("nodetest: %s: dlmd Locks: %w", n.Agent.Name, err)
	}
	if errs := r.GetErrors(); len(errs) > 0 {
		return nil, fmt.Errorf("nodetest: %s: dlmd Locks: %s", n.Agent.Name, strings.Join(errs, "; "))
	}
	masters := map[string]uint32{}
	for _, res := range r.GetResources() {
		if res.GetLockspace() == lockspace {
			masters[string(res.GetName())] = res.GetMaster()
		}
	}
	return masters, nil
}

// DlmMaster is the node that masters resource in lockspace, as the node's
// dlmd reports it (see DlmMasters); the resource must have locks.
func (n *Node) DlmMaster(ctx context.Context, lockspace, resource string) (uint32, error) {
	masters, err := n.DlmMasters(ctx, lockspace)
	if err != nil {
		return 0, err
	}
	m, ok := masters[resource]
	if !ok {
		return 0, fmt.Errorf("nodetest: %s: dlmd lists no lock on %s/%s", n.Agent.Name, lockspace, resource)
	}
	return m, nil
}

// proc is a daemon process of a node. A nil *proc is a daemon the node
// does not run: it never runs and signals are no-ops.
type proc struct {
	name string
	bin  string
	log  string // its log file
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	exit error // of the last run, once done is closed
}

func (p *proc) start(config string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			return fmt.Errorf("nodetest: %s already runs", p.name)
		}
	}
	log, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(p.bin, "--config", config)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("nodetest: start %s: %w", p.name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	go func() {
		err := cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.exit = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

// wait waits for the process to exit and returns its exit error.
func (p *proc) wait(ctx context.Context) error {
	if p == nil {
		return fmt.Errorf("nodetest: the daemon never started")
	}
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return fmt.Errorf("nodetest: %s never started", p.name)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd = nil
	return p.exit
}

func (p *proc) running() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) signal(sig syscall.Signal) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = syscall.Kill(-cmd.Process.Pid, sig)
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
	p.mu.Lock()
	if p.cmd == cmd {
		p.cmd = nil
	}
	p.mu.Unlock()
	return nil
}

func tail(file string, lines int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// WaitFor polls the node's view until cond holds; on timeout the error says
// what it last saw.
func (n *Node) WaitFor(ctx context.Context, what string, cond func(cluster.View) bool) error {
	var last string
	for {
		c, err := n.Client(ctx)
		if err == nil {
			v, err := c.Nodes(ctx)
			c.Close()
			if err == nil {
				if cond(v) {
					return nil
				}
				last = v.Summary()
			} else {
				last = err.Error()
			}
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("nodetest: %s: waiting for %s: last saw %s", n.Agent.Name, what, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// LogTail returns the last lines of the node's clmsd log.
func (n *Node) LogTail(lines int) string { return tail(n.LogFile, lines) }

// noProcMount is the vprocd section that keeps a test node's vprocd from
// mounting the host's /cluster/proc, unless extra has a vprocd section.
func noProcMount(extra string) string {
	if strings.HasPrefix(extra, "vprocd:") || strings.Contains(extra, "\nvprocd:") {
		return ""
	}
	return "vprocd:\n  proc_mount: \"\"\n"
}
