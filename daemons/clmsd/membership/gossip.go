package membership

import "time"

// Gossip decides which failures reported by the local Consul agent's gossip
// view the shell may trust when it reconciles. Gossip knows of a dead node
// before the Consul leader invalidates its session, so the shell leaves the
// nodes gossip reports failed out of Observed.Alive (see [WithoutFailed]);
// but gossip is only a local opinion, wrong in two known ways that Gossip
// guards against:
//
//   - a node cut off from the cluster sees every other node fail. A failure
//     reported before the current run of successful reads of Consul began
//     (while this node could not reach the quorum) is not trusted.
//   - gossip lags a node's return by a few rounds. A failure is trusted only
//     while the node's alive key is held by the session that held it when
//     the failure was first used (or by none): a node that came back holds
//     a new session.
//
// The zero value is ready to use. Times are passed in; Gossip reads no
// clock.
type Gossip struct {
	failedAt   map[string]time.Time // by node name: when gossip first reported it failed
	members    int                  // gossip members at the last poll
	readsSince time.Time            // start of the current run of successful reads; zero: none
	holder     map[string]string    // by node name: alive-key holder when its failure was first used
}

// Poll records one poll of the gossip view at now: the names of the
// members that failed (or left) and how many members there are. It returns
// whether the set of failed names changed, in which case the shell should
// reconcile at once.
func (g *Gossip) Poll(failed map[string]bool, members int, now time.Time) (changed bool) {
	if g.failedAt == nil {
		g.failedAt = map[string]time.Time{}
	}
	g.members = members
	for name := range g.failedAt {
		if !failed[name] {
			delete(g.failedAt, name)
			changed = true
		}
	}
	for name := range failed {
		if _, ok := g.failedAt[name]; !ok {
			g.failedAt[name] = now
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
// session: the trusted failures (reported since the run of reads began)
// whose node still holds its key with the session it held when its failure
// was first used here.
func (g *Gossip) Failed(holders map[string]string) map[string]bool {
	trusted := map[string]bool{}
	for name, at := range g.failedAt {
		if !at.Before(g.readsSince) {
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
