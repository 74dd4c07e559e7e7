package consul

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/consul/api"
)

// SerfHealthCheck is the ID of the check Consul keeps for each node's gossip
// liveness; sessions made here depend on it alone.
const SerfHealthCheck = "serfHealth"

// DefaultLockDelay is the lock-delay of the sessions made here. Consul's own
// default (15s) forbids re-acquiring a lock for that long after its session
// was invalidated, to give a holder that lost its session time to notice and
// stop. OpenSSI sessions are invalidated only when the node's serfHealth goes
// critical, i.e. when the node is dead or cut off, and the survivors must
// take over its claims (node number, lock mastership, cluster IP, singleton
// services) at once, so the delay is made as small as Consul allows
// (a zero value would make Consul apply its default). A daemon that may be
// cut off rather than dead must watch its own session and stop acting on its
// claims when it is gone.
const DefaultLockDelay = time.Millisecond

// ErrBehavior is returned for a session behavior other than release/delete.
var ErrBehavior = errors.New("consul: session behavior must be release or delete")

// SessionOptions tune [CreateSession].
type SessionOptions struct {
	// Node is the node the session belongs to; "" means the agent's node.
	Node string
	// Behavior is what invalidation does to the keys the session holds:
	// api.SessionBehaviorRelease (default: the keys stay, unlocked) or
	// api.SessionBehaviorDelete (the keys are deleted, like ZooKeeper
	// ephemeral nodes).
	Behavior string
	// LockDelay overrides DefaultLockDelay when positive.
	LockDelay time.Duration
}

// CreateSession creates a session named name that is tied to the node's
// serfHealth check only and has no TTL: it lives until the node fails (or
// leaves) or it is destroyed, with no renewal traffic.
func CreateSession(ctx context.Context, client *api.Client, name string, opts SessionOptions) (string, error) {
	switch opts.Behavior {
	case "":
		opts.Behavior = api.SessionBehaviorRelease
	case api.SessionBehaviorRelease, api.SessionBehaviorDelete:
	default:
		return "", fmt.Errorf("consul: create session %q: %w (got %q)", name, ErrBehavior, opts.Behavior)
	}
	if opts.LockDelay <= 0 {
		opts.LockDelay = DefaultLockDelay
	}
	se := &api.SessionEntry{
		Name:       name,
		Node:       opts.Node,
		Behavior:   opts.Behavior,
		LockDelay:  opts.LockDelay,
		NodeChecks: []string{SerfHealthCheck},
	}
	id, _, err := client.Session().Create(se, (&api.WriteOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("consul: create session %q: %w", name, err)
	}
	return id, nil
}

// FindSession returns the newest session named name on node ("" = the
// agent's node), so that a restarted daemon adopts the session (and with it
// the claims) it held before instead of looking like a failed node.
// Sessions with a TTL are ignored: they are not the kind CreateSession makes.
func FindSession(ctx context.Context, client *api.Client, node, name string) (id string, found bool, err error) {
	if node == "" {
		self, err := self(ctx, client)
		if err != nil {
			return "", false, fmt.Errorf("consul: find session %q: %w", name, err)
		}
		node = self.NodeName
	}
	list, _, err := client.Session().Node(node, (&api.QueryOptions{RequireConsistent: true}).WithContext(ctx))
	if err != nil {
		return "", false, fmt.Errorf("consul: find session %q on %s: %w", name, node, err)
	}
	var best *api.SessionEntry
	for _, s := range list {
		if s.Name != name || s.TTL != "" {
			continue
		}
		if best == nil || s.CreateIndex > best.CreateIndex {
			best = s
		}
	}
	if best == nil {
		return "", false, nil
	}
	return best.ID, true, nil
}

// EnsureSession adopts the node's session named name if one exists
// ([FindSession]) and creates it otherwise ([CreateSession]); adopted tells
// which happened. An adopted session keeps the behavior it was created with.
func EnsureSession(ctx context.Context, client *api.Client, name string, opts SessionOptions) (id string, adopted bool, err error) {
	id, found, err := FindSession(ctx, client, opts.Node, name)
	if err != nil {
		return "", false, err
	}
	if found {
		return id, true, nil
	}
	id, err = CreateSession(ctx, client, name, opts)
	return id, false, err
}

// DestroySession invalidates the session, releasing or deleting the keys it
// holds according to its behavior. Destroying an unknown session is not an
// error.
func DestroySession(ctx context.Context, client *api.Client, id string) error {
	if _, err := client.Session().Destroy(id, (&api.WriteOptions{}).WithContext(ctx)); err != nil {
		return fmt.Errorf("consul: destroy session %s: %w", id, err)
	}
	return nil
}
