package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/consul/api"
	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/clmsd/membership"
	"github.com/openssi/openssi/internal/consul"
)

// SessionName names clmsd's membership session in Consul. A restarted clmsd
// adopts the session of this name on its node, so a daemon restart is not a
// node failure.
const SessionName = "openssi-clmsd"

// Config is what the shell needs beyond the Consul client.
type Config struct {
	// NodeNumber is the configured node number; 0 claims one.
	NodeNumber int
	// StateDir holds the file "node" that keeps the number.
	StateDir string
	// AdvertiseAddress is the address peers use; "" = the agent's address.
	AdvertiseAddress string
	// WatchWait bounds one blocking query, so the loop (and the watchdog
	// beat that follows it) runs at least this often. Default 2s.
	WatchWait time.Duration
	// MaxEvents is how many events the view retains for replay. Default 1024.
	MaxEvents int
	// SkewThreshold is the offset above which a peer's clock is reported.
	SkewThreshold time.Duration
	// SkewWindow is how many clock samples per peer the estimate uses.
	// Default 8.
	SkewWindow int
	// GossipPoll is how often the local agent's gossip view is read to
	// learn of failed nodes before the Consul leader does. Default 100ms.
	GossipPoll time.Duration
	// QuorumProbe is how often a consistent read checks that this node
	// still reaches a Consul quorum. Default 1s.
	QuorumProbe time.Duration
}

func (c *Config) setDefaults() {
	if c.WatchWait <= 0 {
		c.WatchWait = 2 * time.Second
	}
	if c.MaxEvents <= 0 {
		c.MaxEvents = 1024
	}
	if c.SkewWindow <= 0 {
		c.SkewWindow = 8
	}
	if c.GossipPoll <= 0 {
		c.GossipPoll = 100 * time.Millisecond
	}
	if c.QuorumProbe <= 0 {
		c.QuorumProbe = time.Second
	}
}

// sessionBehavior is that of the membership session: invalidated, it
// deletes the node's alive key.
const sessionBehavior = api.SessionBehaviorDelete

// Server is one node's clmsd.
type Server struct {
	cfg    Config
	consul *api.Client
	kv     *consul.KV
	log    logrus.FieldLogger

	// Set by Join, read-only afterwards.
	self   membership.Presence
	number int
	// session is written by Join and then by Run's goroutine only (a
	// rejoin), under mu; Run's goroutine reads it without.
	session string

	// grace and recheckAt are Run's goroutine's only: the NODEDOWNs held
	// back, and when the loop must read again even if nothing changes
	// (the first of their graces ends, or a failed rejoin is retried;
	// zero: none).
	grace     membership.Grace
	recheckAt time.Time

	kick chan struct{} // a local event: the reconcile loop re-reads at once
	done chan struct{} // closed when Run returns

	mu        sync.Mutex
	view      membership.View
	changed   chan struct{} // closed and replaced whenever view changes
	gossip    membership.Gossip
	members   []*api.AgentMember // the last gossip poll's, to name the Raft leader
	quorum    bool
	lostSince time.Time
	leaving   bool
	skew      *membership.SkewTracker
	warned    map[int]bool
	// holders is the Consul node name holding each number's claim
	// (clms/nodes/<n>), from the last snapshot read: the name the local
	// API reports for a member and the node its peers' certificates must
	// name (see claimName).
	holders map[int]string
}

// New returns a server; Join must be called before Run.
func New(cfg Config, client *api.Client, log logrus.FieldLogger) *Server {
	cfg.setDefaults()
	return &Server{
		cfg:     cfg,
		consul:  client,
		kv:      consul.NewKV(client),
		log:     log,
		changed: make(chan struct{}),
		done:    make(chan struct{}),
		kick:    make(chan struct{}, 1),
		skew:    membership.NewSkewTracker(cfg.SkewWindow, cfg.SkewThreshold),
		warned:  map[int]bool{},
		holders: map[int]string{},
	}
}

// Number returns this node's number (after Join).
func (s *Server) Number() int { return s.number }

// Self returns this node's name and address (after Join).
func (s *Server) Self() membership.Presence { return s.self }

// ErrNumberInUse is returned by Join when the node number is held by
// another live node.
var ErrNumberInUse = membership.ErrNumberInUse

// Join claims this node's number, adopts or creates the membership session
// and takes the node's alive key, which makes the node UP.
func (s *Server) Join(ctx context.Context) error {
	agent, err := consul.Self(ctx, s.consul)
	if err != nil {
		return fmt.Errorf("clmsd: ask the local Consul agent who it is: %w", err)
	}
	addr := s.cfg.AdvertiseAddress
	if addr == "" {
		addr = agent.Address
	}
	s.self = membership.Presence{Name: agent.NodeName, Address: addr}

	stateFile := filepath.Join(s.cfg.StateDir, "node")
	stored := 0
	if b, err := os.ReadFile(stateFile); err == nil {
		if stored, err = membership.ParseStoredNumber(b); err != nil {
			return fmt.Errorf("clmsd: %s: %w (remove the file to claim a number again)", stateFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("clmsd: read node number: %w", err)
	}

	n, err := s.claim(ctx, stored)
	if err != nil {
		return err
	}
	s.number = n
	if n != stored {
		if err := writeFileAtomic(stateFile, []byte(fmt.Sprintf("%d\n", n))); err != nil {
			return fmt.Errorf("clmsd: keep node number: %w", err)
		}
	}

	if err := s.openSession(ctx); err != nil {
		return err
	}
	// A leave marker from an earlier graceful stop must go before the
	// alive key comes back, or the return would look like a leave.
	if err := s.kv.Delete(ctx, keyLeaving+itoa(n)); err != nil {
		return fmt.Errorf("clmsd: clear leave marker: %w", err)
	}
	ok, err := s.kv.Acquire(ctx, keyAlive+itoa(n), s.session, membership.Claim{Name: s.self.Name, Address: s.self.Address})
	if err != nil {
		return fmt.Errorf("clmsd: take alive key of node %d: %w", n, err)
	}
	if !ok {
		holder := "another node"
		if snap, err := s.list(ctx, consul.Wait{}); err == nil && snap.holders[n] != "" {
			holder = fmt.Sprintf("session %s", snap.holders[n])
		}
		return fmt.Errorf("clmsd: %w: node number %d is held by %s that is still alive; set another clmsd.node_number", ErrNumberInUse, n, holder)
	}
	s.log.WithFields(logrus.Fields{"node": n, "name": s.self.Name, "address": s.self.Address, "session": s.session}).Info("joined the cluster")
	return nil
}

// claim chooses a node number and records the claim with a check-and-set,
// retrying when another node claims concurrently.
func (s *Server) claim(ctx context.Context, stored int) (int, error) {
	for attempt := 0; attempt < 20; attempt++ {
		snap, err := s.list(ctx, consul.Wait{})
		if err != nil {
			return 0, fmt.Errorf("clmsd: read node claims: %w", err)
		}
		n, err := membership.ChooseNumber(membership.NumberRequest{
			Self: s.self.Name, Configured: s.cfg.NodeNumber, Stored: stored,
			Claims: snap.claims, Live: snap.live,
		})
		if err != nil {
			return 0, fmt.Errorf("clmsd: %w", err)
		}
		c, held := snap.claims[n]
		if held && c.Name == s.self.Name && c.Address == s.self.Address {
			return n, nil
		}
		// Index 0 when unclaimed: create only.
		ok, err := s.kv.CAS(ctx, keyNodes+itoa(n), membership.Claim{Name: s.self.Name, Address: s.self.Address}, snap.claimIdx[n])
		if err != nil {
			return 0, fmt.Errorf("clmsd: claim node number %d: %w", n, err)
		}
		if ok {
			if held && c.Name != s.self.Name {
				s.log.WithFields(logrus.Fields{"node": n, "previous": c.Name}).Warn("took over the node number of a node that is not alive")
			}
			return n, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		default:
		}
	}
	return 0, errors.New("clmsd: claim node number: too much contention, giving up after 20 attempts")
}

// openSession adopts this node's existing membership session (left by a
// clmsd that crashed: a daemon restart must not look like a node failure)
// or creates one tied to the node's serfHealth check, so it is invalidated
// when gossip marks this node's agent failed, deleting the alive key.
func (s *Server) openSession(ctx context.Context) error {
	id, adopted, err := consul.EnsureSession(ctx, s.consul, SessionName, consul.SessionOptions{
		Node:     s.self.Name,
		Behavior: sessionBehavior,
	})
	if err != nil {
		return fmt.Errorf("clmsd: membership session: %w", err)
	}
	s.mu.Lock()
	s.session = id
	s.mu.Unlock()
	if adopted {
		s.log.WithField("session", id).Info("adopted the membership session of a previous clmsd")
	}
	return nil
}

// publish makes view the one served locally and wakes the watchers.
func (s *Server) publish(v membership.View) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v.Epoch == s.view.Epoch && len(v.Members) == len(s.view.Members) && s.view.Epoch != 0 {
		s.view = v
		return
	}
	s.view = v
	for _, m := range v.Members {
		if m.State != membership.Up {
			s.skew.Forget(m.Number)
			delete(s.warned, m.Number)
		}
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Server) setQuorum(ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok == s.quorum {
		return
	}
	s.quorum = ok
	if ok {
		s.lostSince = time.Time{}
		s.log.Info("cluster reachable: Consul has a leader")
		return
	}
	s.lostSince = time.Now()
	s.log.WithError(err).Warn("lost the cluster: Consul has no reachable quorum; the membership view may be stale")
}

// setHolders keeps the claims' holders of a snapshot (see holders).
func (s *Server) setHolders(claims map[int]membership.Claim) {
	h := make(map[int]string, len(claims))
	for n, c := range claims {
		h[n] = c.Name
	}
	s.mu.Lock()
	s.holders = h
	s.mu.Unlock()
}

// claimName returns the Consul node name holding node number n's claim
// ("" when none is known). The claim (clms/nodes/<n>) is the record of
// the number's holder that only that node's Consul token may write; the
// name in the shared view (clms/view), which every node writes, is not.
func (s *Server) claimName(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holders[n]
}

// snapshotView returns the served view and the channel closed on its next
// change.
func (s *Server) snapshotView() (membership.View, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.view, s.changed
}

// Leave makes this node leave gracefully: a leave marker first, then the
// session is destroyed (its alive key goes with it), so the survivors
// report NODELEAVE and not NODEDOWN. It waits (bounded by ctx) until the
// view shows the leave.
func (s *Server) Leave(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	already := s.leaving
	s.leaving = true
	session := s.session
	s.mu.Unlock()
	if !already {
		s.wake()
		if err := s.kv.Put(ctx, keyLeaving+itoa(s.number), s.self); err != nil {
			return 0, fmt.Errorf("clmsd: write leave marker: %w", err)
		}
		if err := consul.DestroySession(ctx, s.consul, session); err != nil {
			return 0, fmt.Errorf("clmsd: end membership session: %w", err)
		}
	}
	for {
		v, ch := s.snapshotView()
		if m, ok := v.Member(s.number); ok && m.State == membership.Leaving {
			return v.Epoch, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, fmt.Errorf("clmsd: leave: the view did not show the leave in time: %w", ctx.Err())
		}
	}
}

func itoa(n int) string { return fmt.Sprintf("%d", n) }

// writeFileAtomic writes b to path through a synced temporary file and a
// rename, so a crash leaves the old or the new content, never a torn one.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".node-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
