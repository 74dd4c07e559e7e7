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
	// KVPrefix is the Consul KV prefix of the project, "openssi/".
	KVPrefix string
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
	if c.KVPrefix == "" {
		c.KVPrefix = "openssi/"
	}
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

// Server is one node's clmsd.
type Server struct {
	cfg    Config
	consul *api.Client
	log    logrus.FieldLogger
	prefix string

	// Set by Join, read-only afterwards.
	self    membership.Presence
	number  int
	session string

	mu      sync.Mutex
	view    membership.View
	changed chan struct{} // closed and replaced whenever view changes
	done    chan struct{} // closed when Run returns
	kick    chan struct{} // gossip changed: re-read at once
	failed  map[string]bool
	// failedHolder is, per node gossip reports failed, the session that
	// held its alive key when it did (used by Run's goroutine only).
	failedHolder map[string]string
	// failedAt is when gossip first reported each failed node (guarded by
	// mu); readsSince is when the current run of successful reads of
	// Consul began (Run's goroutine only). A failure gossip reported
	// before that, while this node could not reach the quorum (cut off, it
	// sees everyone as failed), is not trusted.
	failedAt   map[string]time.Time
	members    int // gossip members, guarded by mu
	readsSince time.Time
	quorum     bool
	lostSince  time.Time
	leaving    bool
	skew       *membership.SkewTracker
	warned     map[int]bool
}

// New returns a server; Join must be called before Run.
func New(cfg Config, client *api.Client, log logrus.FieldLogger) *Server {
	cfg.setDefaults()
	return &Server{
		cfg:     cfg,
		consul:  client,
		log:     log,
		prefix:  cfg.KVPrefix,
		changed: make(chan struct{}),
		done:    make(chan struct{}),
		kick:    make(chan struct{}, 1),
		skew:    membership.NewSkewTracker(cfg.SkewWindow, cfg.SkewThreshold),
		warned:  map[int]bool{},
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
	self, err := s.consul.Agent().Self()
	if err != nil {
		return fmt.Errorf("clmsd: ask the local Consul agent who it is: %w", err)
	}
	name, _ := self["Config"]["NodeName"].(string)
	if name == "" {
		return errors.New("clmsd: the local Consul agent did not report its node name")
	}
	addr := s.cfg.AdvertiseAddress
	if addr == "" {
		addr, _ = self["Member"]["Addr"].(string)
	}
	s.self = membership.Presence{Name: name, Address: addr}

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
	if _, err := s.consul.KV().Delete(s.kvKey(keyLeaving+itoa(n)), nil); err != nil {
		return fmt.Errorf("clmsd: clear leave marker: %w", err)
	}
	ok, _, err := s.consul.KV().Acquire(&api.KVPair{
		Key:     s.kvKey(keyAlive + itoa(n)),
		Value:   mustJSON(membership.Claim{Name: s.self.Name, Address: s.self.Address}),
		Session: s.session,
	}, nil)
	if err != nil {
		return fmt.Errorf("clmsd: take alive key of node %d: %w", n, err)
	}
	if !ok {
		holder := "another node"
		if p, _, err := s.consul.KV().Get(s.kvKey(keyAlive+itoa(n)), nil); err == nil && p != nil {
			holder = fmt.Sprintf("session %s", p.Session)
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
		snap, err := s.list(ctx, 0)
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
		ok, _, err := s.consul.KV().CAS(&api.KVPair{
			Key:         s.kvKey(keyNodes + itoa(n)),
			Value:       mustJSON(membership.Claim{Name: s.self.Name, Address: s.self.Address}),
			ModifyIndex: snap.claimIdx[n], // 0 when unclaimed: create only
		}, nil)
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
		Behavior: api.SessionBehaviorDelete,
	})
	if err != nil {
		return fmt.Errorf("clmsd: membership session: %w", err)
	}
	s.session = id
	if adopted {
		s.log.WithField("session", id).Info("adopted the membership session of a previous clmsd")
	}
	return nil
}

// Run is the reconcile loop: it watches the clms/ subtree, computes the
// next view and writes it, until ctx ends. beat is called after every
// iteration (the systemd watchdog is fed from here). ready is called once,
// after the first view has been read.
func (s *Server) Run(ctx context.Context, beat, ready func()) error {
	defer close(s.done)
	go s.watchGossip(ctx)
	go s.probeQuorum(ctx)
	var index uint64
	backoff := time.Duration(0)
	readyDone := false
	for ctx.Err() == nil {
		snap, kicked, err := s.listOrKick(ctx, index)
		beat()
		if kicked {
			index = 0 // gossip changed: read the current state at once
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.log.WithError(err).Debug("read membership")
			s.mu.Lock()
			cutOff := 2*len(s.failed) >= s.members && s.members > 0
			s.mu.Unlock()
			if cutOff {
				// Gossip reports most nodes failed and Consul cannot be read:
				// this node is probably the one cut off, and what its gossip
				// says of the others must not be trusted once it is back.
				s.readsSince = time.Time{}
			}
			backoff = nextBackoff(backoff)
			sleep(ctx, backoff)
			index = 0
			continue
		}
		backoff = 0
		if s.readsSince.IsZero() {
			s.readsSince = time.Now()
		}
		s.setQuorum(true, nil)
		for _, p := range snap.problems {
			s.log.WithField("problem", p).Warn("ignored a malformed membership key")
		}
		if snap.index < index {
			index = 0 // Consul's index went backwards (snapshot restore): start over.
		} else {
			index = snap.index
		}
		if err := s.keepAlive(ctx, snap); err != nil {
			s.log.WithError(err).Warn("rejoin")
		}
		view := snap.view
		s.mu.Lock()
		failed := map[string]bool{}
		for name := range s.failed {
			if !s.failedAt[name].Before(s.readsSince) {
				failed[name] = true
			}
		}
		s.mu.Unlock()
		snap.observed.Alive = membership.WithoutFailed(snap.observed.Alive, s.failedSessions(snap, failed))
		snap.observed.Now = time.Now()
		next, events := membership.Reconcile(snap.view, snap.observed, s.cfg.MaxEvents)
		if len(events) > 0 {
			ok, _, err := s.consul.KV().CAS(&api.KVPair{
				Key: s.kvKey(keyView), Value: mustJSON(next), ModifyIndex: snap.viewIndex,
			}, nil)
			if err != nil {
				s.log.WithError(err).Warn("write membership view")
			} else if ok {
				view = next
				for _, e := range events {
					s.log.WithFields(logrus.Fields{"epoch": e.Epoch, "node": e.Member.Number, "name": e.Member.Name}).Info(e.Type.String())
				}
			}
		}
		s.publish(view)
		if !readyDone {
			readyDone = true
			ready()
		}
	}
	return nil
}

// failedSessions returns the names to treat as failed: gossip says the
// node failed and its alive key is still held by the session that held it
// when gossip first said so (or by none). A node that came back holds a new
// session, so gossip that has not yet heard of its return (it lags by a few
// gossip rounds) does not make it flap DOWN again.
func (s *Server) failedSessions(snap snapshot, failed map[string]bool) map[string]bool {
	if s.failedHolder == nil {
		s.failedHolder = map[string]string{}
	}
	for name := range s.failedHolder {
		if !failed[name] {
			delete(s.failedHolder, name)
		}
	}
	holder := map[string]string{} // by node name
	for n, p := range snap.observed.Alive {
		holder[p.Name] = snap.holders[n]
	}
	out := map[string]bool{}
	for name := range failed {
		held, seen := s.failedHolder[name]
		if !seen {
			held = holder[name] // "" when its key is already gone
			s.failedHolder[name] = held
		}
		if held != "" && held == holder[name] {
			out[name] = true
		}
	}
	return out
}

// listOrKick is list, cut short when gossip reports a change.
func (s *Server) listOrKick(ctx context.Context, index uint64) (snapshot, bool, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := make(chan struct{})
	kicked := make(chan bool, 1)
	go func() {
		select {
		case <-s.kick:
			cancel()
			kicked <- true
		case <-stop:
			kicked <- false
		}
	}()
	snap, err := s.list(lctx, index)
	close(stop)
	if <-kicked && ctx.Err() == nil {
		return snapshot{}, true, nil
	}
	return snap, false, err
}

// keepAlive re-takes this node's membership when its session was
// invalidated while clmsd kept running: the node was cut off long enough to
// be declared failed, or its agent restarted.
func (s *Server) keepAlive(ctx context.Context, snap snapshot) error {
	s.mu.Lock()
	leaving := s.leaving
	s.mu.Unlock()
	if leaving {
		return nil
	}
	held := snap.holders[s.number] == s.session
	m, known := snap.view.Member(s.number)
	declaredDown := known && m.State == membership.Down && m.DownSession != "" && m.DownSession == s.session
	if held && !declaredDown {
		return nil
	}
	if declaredDown {
		// The cluster declared this node down while its session lived on
		// (a brief cut, or a restart fast enough to adopt the session):
		// only a new session brings it back.
		s.log.WithField("node", s.number).Warn("this node was declared down with its current session: rejoining with a new one")
		if _, err := s.consul.Session().Destroy(s.session, nil); err != nil {
			return fmt.Errorf("clmsd: end the session declared down: %w", err)
		}
		id, err := consul.CreateSession(ctx, s.consul, SessionName, consul.SessionOptions{Node: s.self.Name, Behavior: api.SessionBehaviorDelete})
		if err != nil {
			return fmt.Errorf("clmsd: membership session: %w", err)
		}
		s.session = id
	} else {
		s.log.WithField("node", s.number).Warn("this node's membership session is gone (it was declared failed): rejoining")
		if err := s.openSession(ctx); err != nil {
			return err
		}
	}
	ok, _, err := s.consul.KV().Acquire(&api.KVPair{
		Key:     s.kvKey(keyAlive + itoa(s.number)),
		Value:   mustJSON(membership.Claim{Name: s.self.Name, Address: s.self.Address}),
		Session: s.session,
	}, nil)
	if err != nil {
		return fmt.Errorf("clmsd: take alive key of node %d: %w", s.number, err)
	}
	if !ok {
		return fmt.Errorf("clmsd: alive key of node %d is held by another session", s.number)
	}
	return nil
}

// watchGossip polls the local agent's gossip view (no Raft involved) and
// kicks the reconcile loop when the set of failed nodes changes.
func (s *Server) watchGossip(ctx context.Context) {
	t := time.NewTicker(s.cfg.GossipPoll)
	defer t.Stop()
	for {
		members, err := s.consul.Agent().Members(false)
		if err == nil {
			failed := map[string]bool{}
			for _, m := range members {
				// Serf statuses: 1 alive, 2 leaving, 3 left, 4 failed.
				if m.Status == 3 || m.Status == 4 {
					failed[m.Name] = true
				}
			}
			now := time.Now()
			s.mu.Lock()
			changed := !sameSet(failed, s.failed)
			s.failed = failed
			s.members = len(members)
			if s.failedAt == nil {
				s.failedAt = map[string]time.Time{}
			}
			for name := range s.failedAt {
				if !failed[name] {
					delete(s.failedAt, name)
				}
			}
			for name := range failed {
				if _, ok := s.failedAt[name]; !ok {
					s.failedAt[name] = now
				}
			}
			s.mu.Unlock()
			if changed {
				select {
				case s.kick <- struct{}{}:
				default:
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func sameSet(a, b map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}

// probeQuorum makes a consistent read every QuorumProbe; when it fails the
// node reports that it has lost the cluster (it may be cut off) instead of
// serving a view as if all were well.
func (s *Server) probeQuorum(ctx context.Context) {
	t := time.NewTicker(s.cfg.QuorumProbe)
	defer t.Stop()
	failures := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, s.cfg.QuorumProbe+500*time.Millisecond)
		_, _, err := s.consul.KV().Get(s.kvKey(keyView), (&api.QueryOptions{RequireConsistent: true}).WithContext(pctx))
		cancel()
		if ctx.Err() != nil {
			return
		}
		// Two failures in a row: a Raft election (about 2s) is not a loss.
		if err == nil {
			failures = 0
			s.setQuorum(true, nil)
		} else if failures++; failures >= 2 {
			s.setQuorum(false, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
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
	s.mu.Unlock()
	if !already {
		if _, err := s.consul.KV().Put(&api.KVPair{Key: s.kvKey(keyLeaving + itoa(s.number)), Value: mustJSON(s.self)}, nil); err != nil {
			return 0, fmt.Errorf("clmsd: write leave marker: %w", err)
		}
		if _, err := s.consul.Session().Destroy(s.session, nil); err != nil {
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

// nextBackoff paces retries after a failed read of the local agent: the
// first read after a new Raft leader is elected decides how fast a NODEDOWN
// is committed, and while the followers still forward to a dead leader
// every read fails at once, so the pause stays short (capped at 200ms: a
// read of the local agent is cheap).
func nextBackoff(d time.Duration) time.Duration {
	switch {
	case d <= 0:
		return 50 * time.Millisecond
	case d >= 200*time.Millisecond:
		return 200 * time.Millisecond
	default:
		return d * 2
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
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
