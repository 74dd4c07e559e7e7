package membership

import "time"

// DownGrace is how long a member that is UP in the view may go without a
// session on its alive key, while another member is DOWN, before it is
// declared DOWN (see [Grace]).
const DownGrace = time.Second

// Grace holds back the NODEDOWN of a healthy node that Consul failed for a
// moment because of a partition healing.
//
// A node cut off from the others goes on declaring them dead one by one in
// its own gossip, each after a suspicion timeout it cannot shorten (nobody
// confirms), slowed further by memberlist's awareness of its own failed
// probes: for several seconds after the cut. When the partition heals in
// that window, its next verdict ("node X is dead") reaches the healthy
// nodes. A dead message is not a suspicion: each node that receives it
// declares X failed at once, the Raft leader among them, which turns X's
// serfHealth critical and invalidates X's membership session. X refutes
// within milliseconds and takes its alive key again with a new session, but
// a clmsd reading in between would commit a NODEDOWN and a NODEUP of a node
// that never stopped, and dlmd would fence its locks. (Seen in the lab with
// bench/partition-heal: the flap 50-250 ms after the heal, before the
// cut-off node itself was back.)
//
// Grace therefore declares a member DOWN for a lost key only once the key
// has stayed without a session for [DownGrace], and only while another
// member is DOWN: a partition in progress or just healed always has one (the
// cut-off node comes back seconds after the heal), so the failure detection
// of a whole cluster losing one node is not delayed. A second failure during
// an outage is committed DownGrace later than the first.
//
// The zero value is ready to use. Grace reads no clock: the snapshot's time
// (Observed.Now) is the time.
type Grace struct {
	since map[int]time.Time // by node number: first seen UP in the view without a key holder
}

// Hold returns o with each member it holds back put back into Alive (so
// [Reconcile] leaves it UP), and the earliest time at which a held member's
// grace ends, when the shell must reconcile again even if nothing changes
// (zero when no member is held). A member is held when it is UP in v, its
// alive key has no session in o (o.Holders), it is not leaving, another
// member of v is DOWN, and its key has been without a session for less than
// period. o is not modified.
func (g *Grace) Hold(v View, o Observed, period time.Duration) (Observed, time.Time) {
	if g.since == nil {
		g.since = map[int]time.Time{}
	}
	anyDown := false
	for _, m := range v.Members {
		if m.State == Down {
			anyDown = true
			break
		}
	}
	var recheck time.Time
	keep := map[int]bool{}
	var held map[int]Presence
	for _, m := range v.Members {
		n := m.Number
		if m.State != Up || o.Holders[n] != "" || o.Leaving[n] {
			continue
		}
		since, seen := g.since[n]
		if !seen {
			since = o.Now
		}
		keep[n] = true
		g.since[n] = since
		if !anyDown || !o.Now.Before(since.Add(period)) {
			continue // declared DOWN now
		}
		if held == nil {
			held = make(map[int]Presence, len(o.Alive)+1)
			for k, p := range o.Alive {
				held[k] = p
			}
		}
		held[n] = Presence{Name: m.Name, Address: m.Address}
		if end := since.Add(period); recheck.IsZero() || end.Before(recheck) {
			recheck = end
		}
	}
	for n := range g.since {
		if !keep[n] {
			delete(g.since, n)
		}
	}
	if held != nil {
		o.Alive = held
	}
	return o, recheck
}
