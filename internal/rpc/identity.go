package rpc

import (
	"errors"
	"fmt"
	"strings"
)

// Identity is what a daemon's certificate says it is: an OpenSSI service
// on one node. It is written "<service>.<node>", the service name of the
// Consul Connect leaf certificate the daemon holds, for example
// "openssi-dlmd.node3" (SPIFFE ID .../svc/openssi-dlmd.node3). Service
// names have no dot, so the node name, which may have some, is everything
// after the first one.
//
// Only the node's own ACL token may obtain the leaf of its identity (its
// policy grants `service "openssi-<daemon>.<node>" write`), so the
// identity is the node's credential: a peer believes a node number only
// from a certificate naming the node that holds the number's claim.
type Identity struct {
	// Service is the daemon's service name, e.g. "openssi-dlmd".
	Service string
	// Node is the Consul node name of the node the daemon runs on.
	Node string
}

// ErrBadIdentity is wrapped by [ParseIdentity] errors.
var ErrBadIdentity = errors.New("invalid node identity")

// NodeIdentity returns the identity of service (see [ServiceName]) on the
// Consul node named node: "openssi-dlmd", "node3" ->
// "openssi-dlmd.node3".
func NodeIdentity(service, node string) string { return service + "." + node }

// ParseIdentity parses "<service>.<node>". The service must be an OpenSSI
// service ("openssi-<daemon>") and the node must be there: a bare service
// name, the identity of certificates before identities named the node,
// is an error. Errors wrap [ErrBadIdentity].
func ParseIdentity(s string) (Identity, error) {
	service, node, ok := strings.Cut(s, ".")
	switch {
	case !strings.HasPrefix(service, ServicePrefix) || len(service) == len(ServicePrefix):
		return Identity{}, fmt.Errorf("rpc: %w %.100q: not an %s<daemon> service", ErrBadIdentity, s, ServicePrefix)
	case !ok || node == "":
		return Identity{}, fmt.Errorf("rpc: %w %.100q: names no node (want %s.<node>)", ErrBadIdentity, s, service)
	}
	return Identity{Service: service, Node: node}, nil
}

// String returns "<service>.<node>".
func (id Identity) String() string { return NodeIdentity(id.Service, id.Node) }

// OnNode reports whether the identity is that of a daemon on the Consul
// node named name. Consul node names compare case-insensitively; an empty
// name matches nothing.
func (id Identity) OnNode(name string) bool { return name != "" && SameNode(id.Node, name) }

// SameNode reports whether two Consul node names name the same node.
func SameNode(a, b string) bool { return strings.EqualFold(a, b) }

// Matches reports whether the identity is what want asks for: a service
// ("openssi-dlmd": that service on any node) or an identity
// ("openssi-dlmd.node3": that service on that node).
func (id Identity) Matches(want string) bool {
	service, node, perNode := strings.Cut(want, ".")
	if id.Service != service {
		return false
	}
	return !perNode || id.OnNode(node)
}
