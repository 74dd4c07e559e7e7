package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/clmsd/membership"
	"github.com/openssi/openssi/internal/consul"
)

// Run is the reconcile loop: it watches the clms/ subtree, computes the
// next view and writes it, until ctx ends. beat is called after every read
// (the systemd watchdog is fed from here). ready is called once, after the
// first view has been read. The goroutines Run starts (the gossip poller
// and the quorum probe) have returned when it returns.
func (s *Server) Run(ctx context.Context, beat, ready func()) error {
	defer close(s.done)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(2)
	go func() { defer wg.Done(); s.watchGossip(ctx) }()
	go func() { defer wg.Done(); s.probeQuorum(ctx) }()

	readyDone := false
	lastFailed := false
	// Watch returns only when ctx ends, with its error: that is a stop.
	_ = consul.Watch(ctx, func(callCtx context.Context, wait uint64) (uint64, error) {
		if lastFailed {
			// Read the current state at once rather than block on the old
			// index: the first read after a new Raft leader is elected
			// decides how fast a NODEDOWN is committed, and it starts this
			// node's run of successful reads (see membership.Gossip).
			wait = 0
		}
		w := consul.Wait{Index: wait, Time: s.cfg.WatchWait}
		if !s.recheckAt.IsZero() {
			// A member's grace ends then (membership.Grace): read again
			// by that time even if nothing changes.
			if d := time.Until(s.recheckAt); d <= 0 {
				w.Index = 0
			} else if d < w.Time {
				w.Time = d
			}
		}
		snap, err := s.list(callCtx, w)
		beat()
		if err != nil {
			if callCtx.Err() == nil { // not interrupted, not stopping
				lastFailed = true
				s.log.WithError(err).Debug("read membership")
				s.mu.Lock()
				s.gossip.ReadFailed()
				s.mu.Unlock()
			}
			return wait, err
		}
		lastFailed = false
		s.reconcile(ctx, snap)
		if !readyDone {
			readyDone = true
			ready()
		}
		return snap.index, nil
	}, consul.WatchOptions{
		// A read of the local agent is cheap, and while the followers still
		// forward to a dead leader every read fails at once: retry fast.
		MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 200 * time.Millisecond,
		Interrupt:  s.kick,
	})
	return nil
}

// reconcile takes one snapshot of the clms/ subtree to the next view: it
// rejoins if this node was dropped, filters the alive nodes with what
// gossip trusts, holds back the NODEDOWN of a node whose key is lost during
// an outage for its grace (membership.Grace), writes the reconciled view (check-and-set) and publishes
// it locally.
func (s *Server) reconcile(ctx context.Context, snap snapshot) {
	s.mu.Lock()
	s.gossip.ReadOK(time.Now())
	s.mu.Unlock()
	s.setHolders(snap.claims)
	s.setQuorum(true, nil)
	for _, p := range snap.problems {
		s.log.WithField("problem", p).Warn("ignored a malformed membership key")
	}
	var retry time.Time
	if err := s.keepAlive(ctx, snap); err != nil {
		s.log.WithError(err).Warn("rejoin")
		// Often Consul's leader has not yet seen this node alive again
		// (its serfHealth still critical refuses a session); nothing in
		// clms/ will change to wake the loop, so try again shortly: the
		// others hold back its NODEDOWN for membership.DownGrace only.
		retry = time.Now().Add(rejoinRetry)
	}
	holders := map[string]string{} // alive-key holder by node name
	for n, p := range snap.observed.Alive {
		holders[p.Name] = snap.holders[n]
	}
	// The read just went through the Raft leader: ask who it is (a dead
	// leader's gossip failure is trusted once another node leads).
	leader := s.leader(ctx)
	s.mu.Lock()
	failed := s.gossip.Failed(holders, leader)
	s.mu.Unlock()
	snap.observed.Alive = membership.WithoutFailed(snap.observed.Alive, failed)
	snap.observed.Now = time.Now()
	snap.observed, s.recheckAt = s.grace.Hold(snap.view, snap.observed, membership.DownGrace)
	if !retry.IsZero() && (s.recheckAt.IsZero() || retry.Before(s.recheckAt)) {
		s.recheckAt = retry
	}
	view := snap.view
	next, events := membership.Reconcile(snap.view, snap.observed, s.cfg.MaxEvents)
	if len(events) > 0 {
		ok, err := s.kv.CAS(ctx, keyView, next, snap.viewIndex)
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
}

// rejoinRetry is how soon a failed rejoin is tried again.
const rejoinRetry = 100 * time.Millisecond

// keepAlive re-takes this node's membership when its session was
// invalidated while clmsd kept running (the node was cut off long enough to
// be declared failed, or its agent restarted), or when the cluster declared
// it down while its session lived on (see membership.NextRejoin).
func (s *Server) keepAlive(ctx context.Context, snap snapshot) error {
	s.mu.Lock()
	leaving := s.leaving
	s.mu.Unlock()
	switch membership.NextRejoin(snap.view, s.number, s.session, snap.holders[s.number], leaving) {
	case membership.Stay:
		return nil
	case membership.Renew:
		s.log.WithField("node", s.number).Warn("this node was declared down with its current session: rejoining with a new one")
		if err := consul.DestroySession(ctx, s.consul, s.session); err != nil {
			return fmt.Errorf("clmsd: end the session declared down: %w", err)
		}
		id, err := consul.CreateSession(ctx, s.consul, SessionName, consul.SessionOptions{Node: s.self.Name, Behavior: sessionBehavior})
		if err != nil {
			return fmt.Errorf("clmsd: membership session: %w", err)
		}
		s.mu.Lock()
		s.session = id
		s.mu.Unlock()
	case membership.Reopen:
		s.log.WithField("node", s.number).Warn("this node's membership session is gone (it was declared failed): rejoining")
		if err := s.openSession(ctx); err != nil {
			return err
		}
	}
	ok, err := s.kv.Acquire(ctx, keyAlive+itoa(s.number), s.session, membership.Claim{Name: s.self.Name, Address: s.self.Address})
	if err != nil {
		return fmt.Errorf("clmsd: take alive key of node %d: %w", s.number, err)
	}
	if !ok {
		return fmt.Errorf("clmsd: alive key of node %d is held by another session", s.number)
	}
	return nil
}

// watchGossip polls the local agent's gossip view (no Raft involved) and
// wakes the reconcile loop when the set of failed nodes changes. When a
// failure is new it also asks who leads Raft (see membership.Gossip).
func (s *Server) watchGossip(ctx context.Context) {
	t := time.NewTicker(s.cfg.GossipPoll)
	defer t.Stop()
	for {
		members, err := consul.Members(ctx, s.consul)
		if err == nil {
			failed := map[string]bool{}
			for _, m := range members {
				if m.Status == consul.MemberLeft || m.Status == consul.MemberFailed {
					failed[m.Name] = true
				}
			}
			s.mu.Lock()
			s.members = members
			unreported := s.gossip.Unreported(failed)
			s.mu.Unlock()
			leader := ""
			if unreported {
				leader = s.leader(ctx)
			}
			s.mu.Lock()
			changed := s.gossip.Poll(failed, len(members), leader, time.Now())
			s.mu.Unlock()
			if changed {
				s.wake()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// leader returns the node name of the Consul server that leads Raft as
// the local agent knows it, "" when there is none or it cannot be told.
func (s *Server) leader(ctx context.Context) string {
	addr, err := consul.Leader(ctx, s.consul)
	if err != nil {
		s.log.WithError(err).Debug("ask who leads Raft")
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return consul.ServerName(s.members, addr)
}

// wake cuts short the reconcile loop's wait, so it reads the current state
// at once.
func (s *Server) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
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
		var raw json.RawMessage
		_, _, err := s.kv.GetConsistent(pctx, keyView, &raw)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, consul.ErrDecode) {
			err = nil // the read went through; the view's content is the loop's business
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
