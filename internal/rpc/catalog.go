package rpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"

	"github.com/hashicorp/consul/api"

	"github.com/openssi/openssi/internal/consul"
)

// ErrNoPeer is wrapped by [Lookup] when no healthy instance of the daemon
// has the node number asked for.
var ErrNoPeer = errors.New("no healthy peer")

// MetaNode is the service Meta key holding the node number.
const MetaNode = "node"

// Health check timing of a registered daemon.
const (
	checkInterval         = "1s"
	checkTimeout          = "1s"
	deregisterAfterFailed = "1m"
)

// Register adds daemon to the catalog of the local agent behind client:
// service and ID openssi-<daemon>, address addr and port, Meta["node"] =
// node, and a TCP health check on addr:port every second (the agent
// removes the service after a minute of failing). addr "" uses the agent's
// advertise address. The returned deregister removes it again. ctx bounds
// each call to the agent.
func Register(ctx context.Context, client *api.Client, daemon string, node int, addr string, port int) (deregister func(context.Context) error, err error) {
	name := ServiceName(daemon)
	if daemon == "" {
		return nil, errors.New("rpc: register: empty daemon name")
	}
	if node < 1 {
		return nil, fmt.Errorf("rpc: register %s: node number %d < 1", name, node)
	}
	if port < 1 || port > 65535 {
		return nil, fmt.Errorf("rpc: register %s: port %d out of range", name, port)
	}
	if addr == "" {
		if addr, err = agentAddress(ctx, client); err != nil {
			return nil, fmt.Errorf("rpc: register %s: %w", name, err)
		}
	}
	reg := &api.AgentServiceRegistration{
		ID:      name,
		Name:    name,
		Address: addr,
		Port:    port,
		Meta:    map[string]string{MetaNode: strconv.Itoa(node)},
		Check: &api.AgentServiceCheck{
			Name:                           name + " rpc port",
			TCP:                            net.JoinHostPort(addr, strconv.Itoa(port)),
			Interval:                       checkInterval,
			Timeout:                        checkTimeout,
			DeregisterCriticalServiceAfter: deregisterAfterFailed,
		},
	}
	if err := consul.RegisterService(ctx, client, reg); err != nil {
		return nil, fmt.Errorf("rpc: %w", err)
	}
	return func(ctx context.Context) error {
		if err := consul.DeregisterService(ctx, client, name); err != nil {
			return fmt.Errorf("rpc: %w", err)
		}
		return nil
	}, nil
}

// agentAddress returns the advertise address of the agent.
func agentAddress(ctx context.Context, client *api.Client) (string, error) {
	self, err := consul.Self(ctx, client)
	if err != nil {
		return "", fmt.Errorf("agent address: %w", err)
	}
	if self.AdvertiseAddress != "" {
		return self.AdvertiseAddress, nil
	}
	if self.Address != "" {
		return self.Address, nil
	}
	return "", errors.New("agent address: agent reports none")
}

// Lookup returns the "ip:port" of the healthy instance of daemon on node.
// The error wraps [ErrNoPeer] when there is none.
func Lookup(ctx context.Context, client *api.Client, daemon string, node int) (string, error) {
	name := ServiceName(daemon)
	entries, err := consul.ServiceInstances(ctx, client, name, true, nodeFilter(node))
	if err != nil {
		return "", fmt.Errorf("rpc: lookup %s node %d: %w", name, node, err)
	}
	sortByNode(entries)
	for _, e := range entries {
		if n, ok := entryNode(e); ok && n == node {
			return entryAddr(e), nil
		}
	}
	return "", fmt.Errorf("rpc: lookup %s node %d: %w", name, node, ErrNoPeer)
}

// LookupRegistered returns the "ip:port" of daemon on node: the healthy
// instance when there is one, else the instance registered there whatever
// its checks say. After a node restarts, the Consul servers can report its
// services' checks as critical for tens of seconds after they pass on the
// node itself; a caller that retries its dials and authenticates the peer
// (mutual TLS) loses nothing by trying the registered address. The error
// wraps [ErrNoPeer] when nothing is registered.
func LookupRegistered(ctx context.Context, client *api.Client, daemon string, node int) (string, error) {
	return LookupRegisteredOn(ctx, client, daemon, node, "")
}

// LookupRegisteredOn is LookupRegistered among the instances registered
// on the Consul node named host (compared case-insensitively; "" = any):
// the node that holds the number. Any node may register an instance
// claiming any number; restricted to the holder's node, the lookup is
// never misdirected to it (the dial, which wants the holder's certificate,
// would be refused).
func LookupRegisteredOn(ctx context.Context, client *api.Client, daemon string, node int, host string) (string, error) {
	name := ServiceName(daemon)
	entries, err := consul.ServiceInstances(ctx, client, name, false, nodeFilter(node))
	if err != nil {
		return "", fmt.Errorf("rpc: lookup %s node %d: %w", name, node, err)
	}
	sortByNode(entries)
	registered := ""
	for _, e := range entries {
		if host != "" && (e.Node == nil || !SameNode(e.Node.Node, host)) {
			continue
		}
		if n, ok := entryNode(e); ok && n == node {
			if e.Checks.AggregatedStatus() == api.HealthPassing {
				return entryAddr(e), nil
			}
			if registered == "" {
				registered = entryAddr(e)
			}
		}
	}
	if registered != "" {
		return registered, nil
	}
	if host != "" {
		return "", fmt.Errorf("rpc: lookup %s node %d on %s: %w", name, node, host, ErrNoPeer)
	}
	return "", fmt.Errorf("rpc: lookup %s node %d: %w", name, node, ErrNoPeer)
}

// Peers returns the healthy instances of daemon by node number ("ip:port").
// Instances without a valid node number are left out; when two claim the
// same number (a misconfiguration), the one on the alphabetically first
// Consul node wins.
func Peers(ctx context.Context, client *api.Client, daemon string) (map[int]string, error) {
	return PeersOn(ctx, client, daemon, nil)
}

// PeersOn is Peers keeping, for each number n, only the instances on the
// Consul node holder(n) names (compared case-insensitively; a number
// whose holder is "" is left out): any node may register an instance
// claiming any number. A nil holder keeps every instance.
func PeersOn(ctx context.Context, client *api.Client, daemon string, holder func(n int) string) (map[int]string, error) {
	name := ServiceName(daemon)
	entries, err := consul.ServiceInstances(ctx, client, name, true, "")
	if err != nil {
		return nil, fmt.Errorf("rpc: peers %s: %w", name, err)
	}
	sortByNode(entries)
	out := make(map[int]string, len(entries))
	for _, e := range entries {
		n, ok := entryNode(e)
		if !ok {
			continue
		}
		if holder != nil {
			if h := holder(n); h == "" || e.Node == nil || !SameNode(e.Node.Node, h) {
				continue
			}
		}
		if _, dup := out[n]; !dup {
			out[n] = entryAddr(e)
		}
	}
	return out, nil
}

// nodeFilter selects the instances of node number node.
func nodeFilter(node int) string {
	return fmt.Sprintf("Service.Meta.%s == %q", MetaNode, strconv.Itoa(node))
}

func entryNode(e *api.ServiceEntry) (int, bool) {
	if e.Service == nil {
		return 0, false
	}
	n, err := strconv.Atoi(e.Service.Meta[MetaNode])
	return n, err == nil && n >= 1
}

func entryAddr(e *api.ServiceEntry) string {
	addr := e.Service.Address
	if addr == "" && e.Node != nil {
		addr = e.Node.Address
	}
	return net.JoinHostPort(addr, strconv.Itoa(e.Service.Port))
}

// sortByNode orders entries by Consul node name, so that the choice among
// duplicates is stable.
func sortByNode(entries []*api.ServiceEntry) {
	name := func(e *api.ServiceEntry) string {
		if e.Node == nil {
			return ""
		}
		return e.Node.Node
	}
	sort.SliceStable(entries, func(i, j int) bool { return name(entries[i]) < name(entries[j]) })
}
