package consul

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/hashicorp/consul/api"
)

// AgentInfo is what the local agent says of itself.
type AgentInfo struct {
	// NodeName is the agent's node name.
	NodeName string
	// Address is the address the agent gossips on (its Serf member address).
	Address string
	// AdvertiseAddress is the agent's configured advertise address, "" if
	// it has none.
	AdvertiseAddress string
}

// Self asks the local agent who it is.
func Self(ctx context.Context, client *api.Client) (AgentInfo, error) {
	a, err := self(ctx, client)
	if err != nil {
		return AgentInfo{}, fmt.Errorf("consul: %w", err)
	}
	return a, nil
}

func self(ctx context.Context, client *api.Client) (AgentInfo, error) {
	var out map[string]map[string]any
	// The API's Agent().Self takes no options, hence no context: the raw
	// query is the same request with one.
	if _, err := client.Raw().Query("/v1/agent/self", &out, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return AgentInfo{}, fmt.Errorf("agent self: %w", err)
	}
	var a AgentInfo
	a.NodeName, _ = out["Config"]["NodeName"].(string)
	a.Address, _ = out["Member"]["Addr"].(string)
	a.AdvertiseAddress, _ = out["Config"]["AdvertiseAddr"].(string)
	if a.NodeName == "" {
		return AgentInfo{}, errors.New("agent self: the agent did not report its node name")
	}
	return a, nil
}

// Serf member statuses, as in [api.AgentMember].Status.
const (
	MemberAlive   = 1
	MemberLeaving = 2
	MemberLeft    = 3
	MemberFailed  = 4
)

// Members returns the LAN gossip members as the local agent sees them (no
// Raft involved: a cut-off agent answers too).
func Members(ctx context.Context, client *api.Client) ([]*api.AgentMember, error) {
	var out []*api.AgentMember
	// As for Self: the API's Agent().Members takes no context.
	if _, err := client.Raw().Query("/v1/agent/members", &out, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return nil, fmt.Errorf("consul: agent members: %w", err)
	}
	return out, nil
}

// Leader returns the Raft address (host:port) of the Consul leader as the
// local agent's server (or the server it asks) knows it; "" when there is
// none.
func Leader(ctx context.Context, client *api.Client) (string, error) {
	addr, err := client.Status().LeaderWithQueryOptions((&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("consul: status leader: %w", err)
	}
	return addr, nil
}

// ServerName returns the node name of the Consul server among members (as
// [Members] returns them) whose Raft address (host:port, as [Leader]
// returns it) is addr, or "" when none is.
func ServerName(members []*api.AgentMember, addr string) string {
	if addr == "" {
		return ""
	}
	for _, m := range members {
		if m.Tags["role"] == "consul" && net.JoinHostPort(m.Addr, m.Tags["port"]) == addr {
			return m.Name
		}
	}
	return ""
}

// RegisterService adds (or replaces) a service of the local agent.
func RegisterService(ctx context.Context, client *api.Client, reg *api.AgentServiceRegistration) error {
	if err := client.Agent().ServiceRegisterOpts(reg, api.ServiceRegisterOpts{}.WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: register service %s: %w", reg.ID, err)
	}
	return nil
}

// DeregisterService removes a service of the local agent.
func DeregisterService(ctx context.Context, client *api.Client, id string) error {
	if err := client.Agent().ServiceDeregisterOpts(id, (&api.QueryOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: deregister service %s: %w", id, err)
	}
	return nil
}

// ServiceInstances returns the catalog's instances of the service name,
// only those passing their checks when passingOnly. filter is a Consul
// filter expression ("" for none).
func ServiceInstances(ctx context.Context, client *api.Client, name string, passingOnly bool, filter string) ([]*api.ServiceEntry, error) {
	q := (&api.QueryOptions{Filter: filter}).WithContext(ctx)
	entries, _, err := client.Health().Service(name, "", passingOnly, q)
	if err != nil {
		return nil, fmt.Errorf("consul: service %s: %w", name, err)
	}
	return entries, nil
}

// CARoots returns the Connect CA roots, as a blocking query on w.
func CARoots(ctx context.Context, client *api.Client, w Wait) (*api.CARootList, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: w.Index, WaitTime: w.Time}).WithContext(ctx)
	list, meta, err := client.Agent().ConnectCARoots(q)
	if err != nil {
		return nil, 0, fmt.Errorf("consul: connect CA roots: %w", err)
	}
	return list, meta.LastIndex, nil
}

// CALeaf returns the Connect leaf certificate of the service, as a
// blocking query on w.
func CALeaf(ctx context.Context, client *api.Client, service string, w Wait) (*api.LeafCert, uint64, error) {
	q := (&api.QueryOptions{WaitIndex: w.Index, WaitTime: w.Time}).WithContext(ctx)
	leaf, meta, err := client.Agent().ConnectCALeaf(service, q)
	if err != nil {
		return nil, 0, fmt.Errorf("consul: connect leaf certificate of %s: %w", service, err)
	}
	return leaf, meta.LastIndex, nil
}
