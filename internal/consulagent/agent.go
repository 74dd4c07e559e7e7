package consulagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/consul/api"
)

// Standard Consul ports; every agent uses them on its own loopback IP.
const (
	ServerPort  = 8300 // server RPC (Raft, client-to-server RPC)
	SerfLANPort = 8301 // LAN gossip, TCP and UDP
	SerfWANPort = 8302 // WAN gossip on servers, TCP and UDP
	HTTPPort    = 8500 // HTTP API
)

// How long an agent gets to come up (HTTP answering) and to shut down.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
)

// ErrNotRunning is returned when an operation needs a running agent.
var ErrNotRunning = errors.New("consulagent: agent not running")

// Agent is one Consul agent process of a [Cluster]. Its methods are safe for
// concurrent use.
type Agent struct {
	// Name is the Consul node name: node1..nodeN.
	Name string
	// IP is the agent's own loopback address (127.A.B.n).
	IP string
	// HTTPAddr is the agent's HTTP API address, "IP:8500".
	HTTPAddr string
	// Server is true for a Consul server, false for a client agent.
	Server bool
	// DataDir is the agent's data directory, kept across Kill/Start.
	DataDir string
	// ConfigFile is the agent's HCL configuration file.
	ConfigFile string
	// LogFile receives the agent's stdout and stderr (appended across restarts).
	LogFile string

	bin   string
	token string // the ACL token of Client, "" without ACLs

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when cmd has exited
	client *api.Client
}

// Client returns an API client talking to this agent's HTTP address. The same
// client is returned across restarts of the agent.
func (a *Agent) Client() *api.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.client == nil {
		cfg := api.DefaultConfig()
		cfg.Address = a.HTTPAddr
		cfg.Scheme = "http"
		cfg.Token = a.token
		cfg.TokenFile = ""
		c, err := api.NewClient(cfg)
		if err != nil {
			// Only a malformed address or TLS file can fail here; ours are fixed.
			panic(fmt.Sprintf("consulagent: api client for %s: %v", a.HTTPAddr, err))
		}
		a.client = c
	}
	return a.client
}

// Running reports whether the agent's process is running.
func (a *Agent) Running() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.runningLocked()
}

func (a *Agent) runningLocked() bool {
	if a.done == nil {
		return false
	}
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// Start starts the agent's process with its data directory (a restart keeps
// the node ID and Raft state) and waits until its HTTP API answers. Starting a
// running agent is an error.
func (a *Agent) Start() error {
	a.mu.Lock()
	if a.runningLocked() {
		a.mu.Unlock()
		return fmt.Errorf("consulagent: start %s: already running", a.Name)
	}
	logf, err := os.OpenFile(a.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		a.mu.Unlock()
		return fmt.Errorf("consulagent: start %s: %w", a.Name, err)
	}
	fmt.Fprintf(logf, "==== consulagent: starting %s at %s ====\n", a.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(a.bin, "agent", "-config-file="+a.ConfigFile)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		a.mu.Unlock()
		return fmt.Errorf("consulagent: start %s: %w", a.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(done)
	}()
	a.cmd, a.done = cmd, done
	a.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	err = poll(ctx, 25*time.Millisecond, func() error {
		select {
		case <-done:
			return errStop{fmt.Errorf("agent exited: %s", cmd.ProcessState)}
		default:
		}
		_, err := a.Client().Agent().NodeName()
		return err
	})
	if err != nil {
		_ = a.Kill()
		return fmt.Errorf("consulagent: start %s: %w\n%s", a.Name, err, a.LogTail(30))
	}
	return nil
}

// Kill SIGKILLs the agent's process group (a power loss of the node) and
// waits for the process to exit. Killing a stopped agent does nothing.
func (a *Agent) Kill() error {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	a.mu.Unlock()
	if cmd == nil {
		return nil
	}
	select {
	case <-done:
		return nil
	default:
	}
	// The agent leads its own process group: kill the group, then the process
	// itself in case the group signal could not be sent.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Process.Kill()
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("consulagent: kill %s: process %d did not exit", a.Name, cmd.Process.Pid)
	}
}

// Stop sends SIGTERM and waits for a graceful shutdown. With
// leave_on_terminate=false the node does not leave the cluster: the others
// see it fail. After a timeout the agent is killed.
func (a *Agent) Stop() error {
	return a.signalAndWait(func(cmd *exec.Cmd) error { return cmd.Process.Signal(syscall.SIGTERM) }, "stop")
}

// Leave makes the agent leave the cluster gracefully (`consul leave`), after
// which its process exits; it waits for that. Other members then see the node
// as left, not failed, and its serfHealth check is deregistered.
func (a *Agent) Leave() error {
	return a.signalAndWait(func(*exec.Cmd) error { return a.Client().Agent().Leave() }, "leave")
}

func (a *Agent) signalAndWait(signal func(*exec.Cmd) error, what string) error {
	a.mu.Lock()
	cmd, done := a.cmd, a.done
	running := a.runningLocked()
	a.mu.Unlock()
	if !running {
		return fmt.Errorf("consulagent: %s %s: %w", what, a.Name, ErrNotRunning)
	}
	if err := signal(cmd); err != nil {
		_ = a.Kill()
		return fmt.Errorf("consulagent: %s %s: %w", what, a.Name, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(stopTimeout):
		_ = a.Kill()
		return fmt.Errorf("consulagent: %s %s: no exit after %v, killed", what, a.Name, stopTimeout)
	}
}

// LogTail returns the last n lines of the agent's log file.
func (a *Agent) LogTail(n int) string {
	b, err := os.ReadFile(a.LogFile)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ports lists the (network, port) pairs the agent binds.
func (a *Agent) ports() [][2]any {
	p := [][2]any{{"tcp", HTTPPort}, {"tcp", SerfLANPort}, {"udp", SerfLANPort}}
	if a.Server {
		p = append(p, [2]any{"tcp", ServerPort}, [2]any{"tcp", SerfWANPort}, [2]any{"udp", SerfWANPort})
	}
	return p
}

// portsFree reports whether all of the agent's ports can be bound on its IP.
func (a *Agent) portsFree() error {
	for _, np := range a.ports() {
		addr := net.JoinHostPort(a.IP, fmt.Sprint(np[1]))
		switch np[0] {
		case "tcp":
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			l.Close()
		case "udp":
			c, err := net.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			c.Close()
		}
	}
	return nil
}

// errStop wraps an error that ends a poll at once.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

// poll calls f every interval until it returns nil, it returns an errStop,
// or ctx ends; the last error from f is reported on timeout.
func poll(ctx context.Context, interval time.Duration, f func() error) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	var last error
	for {
		err := f()
		if err == nil {
			return nil
		}
		var stop errStop
		if errors.As(err, &stop) {
			return stop.err
		}
		if ctx.Err() == nil || last == nil {
			last = err // keep the last error that was not caused by ctx ending
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), last)
		case <-t.C:
		}
	}
}
