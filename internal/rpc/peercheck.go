package rpc

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/openssi/openssi/internal/logging"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// HolderTimeout bounds one lookup of a node number's holder.
const HolderTimeout = 2 * time.Second

// PeerCheck is a daemon's belief about its peers by node number: which
// Consul node holds a number's claim, and whether the caller of a peer RPC
// holds that node's certificate. A number is believed only from the node
// that holds it (see ARCHITECTURE.md, "Trust").
type PeerCheck struct {
	// Service is the daemon's Connect service, e.g. "openssi-vprocd".
	Service string
	// Prefix starts its errors, e.g. "vproc".
	Prefix string
	// Peer names a refused caller in messages, e.g. "a peer vprocd".
	Peer string
	// NodeName returns the Consul node name holding a number's claim, ""
	// for none; nil means no membership to ask.
	NodeName func(context.Context, uint32) (string, error)
	// Log receives the refusals, each kind once at error level.
	Log logrus.FieldLogger
	// CacheFor is how long a holder NodeName returned is believed
	// without asking again (0: ask every time); the owner calls Forget
	// for a number whose membership changed, so the cache is never
	// older than the owner's view of membership, and at most CacheFor
	// old. A number changes hands only after its holder left or was
	// declared DOWN, which is such a change.
	CacheFor time.Duration
	refusals logging.Once

	mu    sync.Mutex
	known map[uint32]holderEntry
	gen   uint64           // Forgets so far
	now   func() time.Time // time.Now; tests set it
}

type holderEntry struct {
	name string
	at   time.Time
}

// Forget drops what is known of number n's holder: its membership
// changed.
func (p *PeerCheck) Forget(n uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.known, n)
	p.gen++
}

func (p *PeerCheck) clock() time.Time {
	if p.now != nil {
		return p.now()
	}
	return time.Now()
}

// cached returns n's holder when known for less than CacheFor, else
// the time and Forget count to remember a lookup's answer with.
func (p *PeerCheck) cached(n uint32) (name string, ok bool, asked time.Time, gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock()
	if e, ok := p.known[n]; ok && now.Sub(e.at) < p.CacheFor {
		return e.name, true, now, p.gen
	}
	return "", false, now, p.gen
}

// remember records n's holder as looked up at asked (an answer that
// arrived after a Forget of n is not kept: it may predate the change).
func (p *PeerCheck) remember(n uint32, name string, asked time.Time, gen uint64) {
	if p.CacheFor <= 0 || name == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gen != gen {
		return
	}
	if p.known == nil {
		p.known = map[uint32]holderEntry{}
	}
	p.known[n] = holderEntry{name: name, at: asked}
}

// Holder returns the Consul node name holding node number n.
func (p *PeerCheck) Holder(ctx context.Context, n uint32) (string, error) {
	if p.NodeName == nil {
		return "", fmt.Errorf("%s: who holds node %d: no membership to ask", p.Prefix, n)
	}
	name, ok, asked, gen := p.cached(n)
	if ok {
		return name, nil
	}
	ctx, cancel := context.WithTimeout(ctx, HolderTimeout)
	defer cancel()
	name, err := p.NodeName(ctx, n)
	if err != nil {
		return "", fmt.Errorf("%s: who holds node %d: %w", p.Prefix, n, err)
	}
	if name == "" {
		return "", fmt.Errorf("%s: node %d has no known holder", p.Prefix, n)
	}
	p.remember(n, name, asked, gen)
	return name, nil
}

// RequireNode checks that the caller of ctx is the daemon of the node
// holding number claimed: a mismatch is refused with PermissionDenied
// (logged once per kind), a number whose holder is not known now with
// Unavailable.
func (p *PeerCheck) RequireNode(ctx context.Context, claimed uint32) error {
	id, ok := PeerIdentity(ctx)
	if !ok || id.Service != p.Service {
		return status.Errorf(codes.PermissionDenied, "%s: only %s may call this (caller %q)", p.Prefix, p.Service, id)
	}
	name, err := p.Holder(ctx, claimed)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if !id.OnNode(name) {
		msg := fmt.Sprintf("%s: refused %s: it claims to be node %d (held by %q) but its certificate names node %q", p.Prefix, p.Peer, claimed, name, id.Node)
		p.refusals.Log(p.Log, fmt.Sprintf("%d|%s|%s", claimed, strings.ToLower(id.Node), strings.ToLower(name)),
			logrus.Fields{"claimed_node": claimed, "holder": name, "certificate_node": id.Node}, msg)
		return status.Error(codes.PermissionDenied, msg)
	}
	return nil
}
