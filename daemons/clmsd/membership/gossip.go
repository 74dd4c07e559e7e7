package membership

import "time"

// Gossip decides which failures reported by the local Consul agent's gossip
// view the shell may trust when it reconciles. The membership session of a
// node is tied to its serfHealth check: the Consul leader invalidates it
// (and its alive key goes) as soon as the leader's own gossip declares the
// node failed, in the same Raft write that turns serfHealth critical. That
// is how a node's death is normally seen, and Gossip has no part in it.
//
// Gossip matters when that path is blocked: a dead Raft leader's session
// can only be invalidated once a new leader is elected and has reconciled
// its members, seconds later. The shell therefore leaves out of
// Observed.Alive the nodes Gossip reports failed (see [WithoutFailed]), so
// the first write the new leader accepts commits the NODEDOWN. But gossip is
// only this node's opinion, wrong in three known ways that Gossip guards
// against:
//
//   - a node cut off from the cluster sees every other node fail. A failure
//     reported before the current run of successful reads of Consul began
//     (while this node could not reach the quorum) is not trusted.
//   - gossip lags a node's return by a few rounds. A failure is trusted only
//     while the node's alive key is held by the session that held it when
//     the failure was first used (or by none): a node that came back holds
//     a new session.
//   - gossip can be stale about a healthy node. After a partition heals, the
//     rejoining node's view (everyone else dead) turns into suspicions at
//     the node it rejoins through; an accused node that refutes too late
//     for that node stays "failed" there until a push/pull, up to 30 s,
//     while everyone else, the Raft leader included, knows it alive. A
//     failure is therefore trusted only for the node that led Raft when
//     gossip first reported it (as this node last knew the leader; any node
//     when it never knew one), and only once another node leads: the
//     election is Raft's own, independent verdict that the old leader is
//     gone. Any other node's failure is left to the
//     living leader, whose invalidation of the session is what the shell
//     acts on; a leader that goes on leading is alive whatever this node's
//     gossip says.
//
// The zero value is ready to use. Times and the Raft leader (a node name,
// "" when unknown) are passed in; Gossip reads no clock and asks no one.
type Gossip struct {
	failedAt   map[string]time.Time // by node name: when gossip first reported it failed
	led        map[string]bool      // by node name: it led Raft (or none was known) when first reported failed
	members    int                  // gossip members at the last poll
	readsSince time.Time            // start of the current run of successful reads; zero: none
	holder     map[string]string    // by node name: alive-key holder when its failure was first used
	leader     string               // the last Raft leader known; "" none yet
}

// Unreported reports whether failed names a node that the last poll did
// not report failed. Only then does Poll need to know the Raft leader, so
// the shell asks Consul for it only then.
func (g *Gossip) Unreported(failed map[string]bool) bool {
	for name := range failed {
		if _, ok := g.failedAt[name]; !ok {
			return true
		}
	}
	return false
}

// Poll records one poll of the gossip view at now: the names of the
// members that failed (or left), how many members there are, and the node
// that leads Raft as the local agent sees it ("" when unknown: no leader,
// or not asked because no failure is new). It returns whether the set of
// failed names changed, in which case the shell should reconcile at once.
func (g *Gossip) Poll(failed map[string]bool, members int, leader string, now time.Time) (changed bool) {
	if g.failedAt == nil {
		g.failedAt = map[string]time.Time{}
		g.led = map[string]bool{}
	}
	if leader == "" {
		leader = g.leader // the last one known, if any
	} else {
		g.leader = leader
	}
	g.members = members
	for name := range g.failedAt {
		if !failed[name] {
			delete(g.failedAt, name)
			delete(g.led, name)
			changed = true
		}
	}
	for name := range failed {
		if _, ok := g.failedAt[name]; !ok {
			g.failedAt[name] = now
			g.led[name] = leader == "" || leader == name
			changed = true
		}
	}
	return changed
}

// ReadFailed records a failed read of Consul. When gossip also reports at
// least half of the members failed, this node is probably the one cut off:
// the run of successful reads is over, and the failures gossip reports now
// will not be trusted once the reads succeed again.
func (g *Gossip) ReadFailed() {
	if g.members > 0 && 2*len(g.failedAt) >= g.members {
		g.readsSince = time.Time{}
	}
}

// ReadOK records a successful read of Consul at now.
func (g *Gossip) ReadOK(now time.Time) {
	if g.readsSince.IsZero() {
		g.readsSince = now
	}
}

// Failed returns the names to treat as failed in a snapshot in which
// holders maps the name of each node whose alive key is held to the holding
// session, leader being the node that leads Raft now ("" when unknown): the
// trusted failures (reported since the run of reads began, of a node that
// led Raft then and does not lead it now) whose node still holds its key
// with the session it held when its failure was first used here.
func (g *Gossip) Failed(holders map[string]string, leader string) map[string]bool {
	if leader != "" {
		g.leader = leader
	}
	trusted := map[string]bool{}
	for name, at := range g.failedAt {
		if !at.Before(g.readsSince) && g.led[name] && leader != name {
			trusted[name] = true
		}
	}
	if g.holder == nil {
		g.holder = map[string]string{}
	}
	for name := range g.holder {
		if !trusted[name] {
			delete(g.holder, name)
		}
	}
	out := map[string]bool{}
	for name := range trusted {
		held, seen := g.holder[name]
		if !seen {
			held = holders[name] // "" when its key is already gone
			g.holder[name] = held
		}
		if held != "" && held == holders[name] {
			out[name] = true
		}
	}
	return out
}

// Rejoin is what the shell must do to keep this node in the membership.
type Rejoin int

// The rejoin actions.
const (
	// Stay: the node holds its alive key with its session; nothing to do.
	Stay Rejoin = iota
	// Reopen: the session is gone (the node was declared failed, or its
	// agent restarted): adopt or create a session and take the key again.
	Reopen
	// Renew: the cluster declared the node DOWN while its session lived on
	// (a brief cut, or a restart fast enough to adopt the session); that
	// session can never bring it back UP, so destroy it, create a new one
	// and take the key again.
	Renew
)

// NextRejoin returns what node number, holding session, must do given the
// view and the session that holds its alive key ("" for none). A node that
// is leaving stays out.
func NextRejoin(v View, number int, session, holder string, leaving bool) Rejoin {
	if leaving {
		return Stay
	}
	m, known := v.Member(number)
	if known && m.State == Down && m.DownSession != "" && m.DownSession == session {
		return Renew
	}
	if holder != session {
		return Reopen
	}
	return Stay
}
