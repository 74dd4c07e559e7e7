package membership

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// State is a node's membership state.
type State int

// The membership states.
const (
	// Up: the node holds its membership session.
	Up State = iota + 1
	// Down: the node failed.
	Down
	// Leaving: the node left (or is leaving) gracefully.
	Leaving
)

var stateNames = map[State]string{Up: "UP", Down: "DOWN", Leaving: "LEAVING"}

// String returns UP, DOWN or LEAVING.
func (s State) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText encodes the state by name.
func (s State) MarshalText() ([]byte, error) {
	if _, ok := stateNames[s]; !ok {
		return nil, fmt.Errorf("membership: invalid state %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes a state name.
func (s *State) UnmarshalText(b []byte) error {
	for k, v := range stateNames {
		if v == string(b) {
			*s = k
			return nil
		}
	}
	return fmt.Errorf("membership: unknown state %q", string(b))
}

// EventType is the kind of a membership event.
type EventType int

// The membership events.
const (
	NodeUp EventType = iota + 1
	NodeDown
	NodeLeave
)

var eventNames = map[EventType]string{NodeUp: "NODEUP", NodeDown: "NODEDOWN", NodeLeave: "NODELEAVE"}

// String returns NODEUP, NODEDOWN or NODELEAVE.
func (t EventType) String() string {
	if n, ok := eventNames[t]; ok {
		return n
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// MarshalText encodes the event type by name.
func (t EventType) MarshalText() ([]byte, error) {
	if _, ok := eventNames[t]; !ok {
		return nil, fmt.Errorf("membership: invalid event type %d", int(t))
	}
	return []byte(t.String()), nil
}

// UnmarshalText decodes an event type name.
func (t *EventType) UnmarshalText(b []byte) error {
	for k, v := range eventNames {
		if v == string(b) {
			*t = k
			return nil
		}
	}
	return fmt.Errorf("membership: unknown event type %q", string(b))
}

// Member is one node of the view.
type Member struct {
	Number  int       `json:"number"`
	Name    string    `json:"name"`
	Address string    `json:"address"`
	State   State     `json:"state"`
	Since   time.Time `json:"since"`
	// DownSession is, for a DOWN node, the Consul session that held its
	// alive key when it was declared down ("" when none did). That session
	// cannot bring the node UP again: only a new one can. It keeps the
	// verdict of a node whose gossip saw the failure first from being
	// undone by a node whose gossip had not, while Consul has not yet
	// invalidated the dead node's session.
	DownSession string `json:"down_session,omitempty"`
}

// Event is one membership change. Epochs are consecutive: the event that
// made the view's epoch E has Epoch E.
type Event struct {
	Epoch  uint64    `json:"epoch"`
	Type   EventType `json:"type"`
	Member Member    `json:"member"`
	Time   time.Time `json:"time"`
}

// View is the clusterwide membership view, stored as one Consul KV value.
// Members is sorted by node number; Events holds the most recent events
// (at most the retention the shell passes to Reconcile), oldest first, the
// last one having Epoch == View.Epoch.
type View struct {
	Epoch   uint64   `json:"epoch"`
	Members []Member `json:"members"`
	Events  []Event  `json:"events"`
}

// Presence is a node that currently holds its membership session.
type Presence struct {
	Name    string
	Address string
	// Session is the Consul session holding the node's alive key.
	Session string
}

// Observed is what the shell read from Consul in one consistent snapshot.
type Observed struct {
	// Alive maps the node numbers whose alive key is held by a session.
	Alive map[int]Presence
	// Holders maps every node number whose alive key is held to the
	// holding session, including nodes the shell left out of Alive because
	// gossip reports them failed.
	Holders map[int]string
	// Leaving holds the node numbers that announced a graceful leave.
	Leaving map[int]bool
	// Now stamps the events this reconciliation produces.
	Now time.Time
}

// WithoutFailed returns alive minus the nodes whose name gossip reports
// failed. A dead Raft leader's session outlives its death until a new
// leader is elected and reconciles the failure; the local gossip view knows
// sooner, so the shell filters with the failures [Gossip] trusts.
func WithoutFailed(alive map[int]Presence, failed map[string]bool) map[int]Presence {
	if len(failed) == 0 {
		return alive
	}
	out := make(map[int]Presence, len(alive))
	for n, p := range alive {
		if !failed[p.Name] {
			out[n] = p
		}
	}
	return out
}

// Member returns the member with node number n.
func (v View) Member(n int) (Member, bool) {
	i := sort.Search(len(v.Members), func(i int) bool { return v.Members[i].Number >= n })
	if i < len(v.Members) && v.Members[i].Number == n {
		return v.Members[i], true
	}
	return Member{}, false
}

// Reconcile returns the view that follows v given what Consul shows, and the
// events that lead to it (in epoch order). It is deterministic: nodes are
// visited in number order, so every clmsd computes the same result from the
// same snapshot. v is not modified. maxEvents bounds the retained history
// (at least 1).
func Reconcile(v View, o Observed, maxEvents int) (View, []Event) {
	if maxEvents < 1 {
		maxEvents = 1
	}
	next := View{Epoch: v.Epoch, Members: append([]Member(nil), v.Members...), Events: v.Events}
	var events []Event
	emit := func(t EventType, m Member) {
		next.Epoch++
		m.Since = o.Now
		next.set(m)
		events = append(events, Event{Epoch: next.Epoch, Type: t, Member: m, Time: o.Now})
	}
	for _, n := range numbers(o.Alive, next.Members) {
		p, alive := o.Alive[n]
		m, known := next.Member(n)
		switch {
		case alive && o.Leaving[n]:
			// A leave in progress: the node still holds its session.
			if !known || m.State == Up {
				emit(NodeLeave, Member{Number: n, Name: p.Name, Address: p.Address, State: Leaving})
			}
		case alive:
			if known && m.State == Down && m.DownSession != "" && p.Session == m.DownSession {
				// The session declared dead still holds the key until
				// Consul invalidates it: not a return.
				continue
			}
			if !known || m.State != Up {
				emit(NodeUp, Member{Number: n, Name: p.Name, Address: p.Address, State: Up})
			} else if m.Name != p.Name || m.Address != p.Address {
				// Same membership, new identity details: no event.
				m.Name, m.Address = p.Name, p.Address
				next.set(m)
			}
		case known && m.State == Up:
			if o.Leaving[n] {
				m.State = Leaving
				emit(NodeLeave, m)
			} else {
				m.State = Down
				m.DownSession = o.Holders[n]
				emit(NodeDown, m)
			}
		}
	}
	if len(events) > 0 {
		all := append(append([]Event(nil), v.Events...), events...)
		if len(all) > maxEvents {
			all = all[len(all)-maxEvents:]
		}
		next.Events = all
	}
	return next, events
}

// set inserts or replaces m, keeping Members sorted.
func (v *View) set(m Member) {
	i := sort.Search(len(v.Members), func(i int) bool { return v.Members[i].Number >= m.Number })
	if i < len(v.Members) && v.Members[i].Number == m.Number {
		v.Members[i] = m
		return
	}
	v.Members = append(v.Members, Member{})
	copy(v.Members[i+1:], v.Members[i:])
	v.Members[i] = m
}

// numbers returns the union of alive and member node numbers, ascending.
func numbers(alive map[int]Presence, members []Member) []int {
	seen := make(map[int]bool, len(alive)+len(members))
	var out []int
	for n := range alive {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, m := range members {
		if !seen[m.Number] {
			seen[m.Number] = true
			out = append(out, m.Number)
		}
	}
	sort.Ints(out)
	return out
}

// ErrTrimmed is returned by EventsAfter when events after the asked epoch
// are no longer retained.
var ErrTrimmed = errors.New("membership: events no longer retained")

// EventsAfter returns the retained events with an epoch greater than epoch,
// oldest first. It fails with ErrTrimmed when some of them were dropped from
// the retained history, so the caller must resynchronise from the view.
func EventsAfter(v View, epoch uint64) ([]Event, error) {
	if epoch >= v.Epoch {
		return nil, nil
	}
	if len(v.Events) == 0 || v.Events[0].Epoch > epoch+1 {
		oldest := v.Epoch + 1
		if len(v.Events) > 0 {
			oldest = v.Events[0].Epoch
		}
		return nil, fmt.Errorf("%w: asked for events after epoch %d, oldest kept is %d", ErrTrimmed, epoch, oldest)
	}
	i := sort.Search(len(v.Events), func(i int) bool { return v.Events[i].Epoch > epoch })
	return append([]Event(nil), v.Events[i:]...), nil
}

// Validate checks the invariants of a view decoded from Consul: members
// sorted and unique with valid numbers and states, events consecutive and
// ending at the view's epoch.
func (v View) Validate() error {
	var problems []string
	for i, m := range v.Members {
		if m.Number < 1 || m.Number > MaxNodeNumber {
			problems = append(problems, fmt.Sprintf("member %d has node number %d", i, m.Number))
		}
		if i > 0 && v.Members[i-1].Number >= m.Number {
			problems = append(problems, fmt.Sprintf("members not sorted at %d", i))
		}
		if _, ok := stateNames[m.State]; !ok {
			problems = append(problems, fmt.Sprintf("node %d has state %d", m.Number, int(m.State)))
		}
	}
	for i, e := range v.Events {
		if i > 0 && v.Events[i-1].Epoch+1 != e.Epoch {
			problems = append(problems, fmt.Sprintf("event epochs jump from %d to %d", v.Events[i-1].Epoch, e.Epoch))
		}
		if _, ok := eventNames[e.Type]; !ok {
			problems = append(problems, fmt.Sprintf("event %d has type %d", e.Epoch, int(e.Type)))
		}
	}
	if n := len(v.Events); n > 0 && v.Events[n-1].Epoch != v.Epoch {
		problems = append(problems, fmt.Sprintf("last event epoch %d is not the view epoch %d", v.Events[n-1].Epoch, v.Epoch))
	}
	if len(problems) > 0 {
		return fmt.Errorf("membership: invalid view: %s", strings.Join(problems, "; "))
	}
	return nil
}
