package migrate

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/pgroup"
)

// Errors of Migrate, and the reasons a move fails.
var (
	ErrSelf       = errors.New("migrate: the process is already on that node")
	ErrTargetDown = errors.New("migrate: the target node is not up")
	ErrBusy       = errors.New("migrate: too many moves in progress")
	ErrMoving     = errors.New("migrate: the process is already moving")
	ErrNotStarted = errors.New("migrate: not started")
)

// keep is how long a finished move is remembered, to answer late
// messages about it.
const keep = 10 * time.Minute

// Node is one vprocd's part in every move it takes part in: as the
// source of its processes, as the target of others', and as the arbiter
// of the moves of processes whose origin it is (or whose origin's
// surrogate it is). Not safe for concurrent use; see the package doc.
type Node struct {
	cfg     Config
	started bool
	epoch   uint64
	up      map[uint32]bool
	upList  []uint32
	seq     uint64

	sources map[ID]*source
	targets map[ID]*target
	arbs    map[ID]*arb
	// where is, for the processes this node arbitrates, where they are
	// known to run (the origin's table, told by Locate, and the moves
	// this node committed).
	where map[uint64]uint32
	// done remembers what this node acted on for a finished move, as
	// source or target (keyed by role), until it is older than keep.
	done map[doneKey]tomb

	local []Message
	rd    Ready
}

type role uint8

const (
	asSource role = iota + 1
	asTarget
)

type doneKey struct {
	id   ID
	role role
}

type tomb struct {
	outcome Outcome
	at      time.Time
}

type srcState uint8

const (
	srcFreezing srcState = iota + 1
	srcSent
	srcDeciding
	srcThawing // Abort decided; waiting for the target's acknowledgement
)

type source struct {
	move       Move
	state      srcState
	want       Outcome
	reason     string
	deadline   time.Time // srcSent: the confirmation's
	next       time.Time // srcDeciding: the next Decide
	promised   Ballot
	first      Ballot // the first ballot it was asked for
	targetGone bool
	err        error     // srcThawing: why the move failed
	thawBy     time.Time // srcThawing: thaw without the acknowledgement
}

type tgtState uint8

const (
	tgtRestoring tgtState = iota + 1
	tgtConfirmed
)

type target struct {
	move     Move
	state    tgtState
	orphan   bool    // the source went DOWN before the confirmation
	decided  Outcome // a decision that came while restoring
	promised Ballot
	next     time.Time
}

type arb struct {
	move      Move
	ballot    Ballot
	outcome   Outcome
	reason    string
	wantCmt   bool // recovering: the source asked to commit
	wantAbort bool // recovering: the source asked to abort
	answers   map[uint32]Message
	next      time.Time
	decideAt  time.Time
}

// New returns a Node; call Start before anything else.
func New(cfg Config) *Node {
	return &Node{cfg: cfg.withDefaults(), up: map[uint32]bool{},
		sources: map[ID]*source{}, targets: map[ID]*target{}, arbs: map[ID]*arb{}, where: map[uint64]uint32{}, done: map[doneKey]tomb{}}
}

// Start gives the Node clmsd's view: its epoch and the nodes UP.
func (n *Node) Start(now time.Time, epoch uint64, up []uint32) {
	n.started = true
	n.setView(epoch, up)
}

func (n *Node) setView(epoch uint64, up []uint32) {
	n.epoch = epoch
	n.up = map[uint32]bool{}
	for _, u := range up {
		n.up[u] = true
	}
	n.upList = slices.Clone(up)
	slices.Sort(n.upList)
}

// Locate tells the Node, as an arbiter, where process cpid is known to
// run or be frozen (node 0: nowhere), from the origin's table (pgroup,
// with the survivors' reports after an origin's death). An arbiter
// commits a move whose source is gone only onto a process not known to
// run elsewhere, so that two stale copies of one process (moves whose
// source died after their aborts were decided and forgotten) are never
// both resumed.
func (n *Node) Locate(cpid uint64, node uint32) {
	if node == 0 {
		delete(n.where, cpid)
		return
	}
	n.where[cpid] = node
}

// Ready returns what the Node wants done since the last call.
func (n *Node) Ready() Ready {
	rd := n.rd
	n.rd = Ready{}
	return rd
}

// arbiterOf is the node that decides the moves of origin's processes:
// the origin while it is UP, else its surrogate (pgroup.Surrogate), as
// every node computes it from the same view.
func (n *Node) arbiterOf(origin uint32) (uint32, bool) {
	if n.up[origin] {
		return origin, true
	}
	return pgroup.Surrogate(origin, n.upList)
}

func (n *Node) send(m Message) {
	m.From = n.cfg.Node
	if m.To == n.cfg.Node {
		n.local = append(n.local, m)
		return
	}
	n.rd.Messages = append(n.rd.Messages, m)
}

func (n *Node) act(k ActionKind, mv Move) {
	n.rd.Actions = append(n.rd.Actions, Action{Kind: k, Move: mv})
}

// flush delivers the messages this node sent itself (it is, say, both
// the source and the origin).
func (n *Node) flush(now time.Time) {
	for len(n.local) > 0 {
		m := n.local[0]
		n.local = n.local[1:]
		n.step(now, m)
	}
}

func (n *Node) active() int { return len(n.sources) + len(n.targets) }

// Migrate starts moving process cpid (whose origin is origin, running
// here) to target with mech. The shell carries out Freeze and reports
// with Frozen; the move ends with a Result.
func (n *Node) Migrate(now time.Time, cpid uint64, origin, to uint32, mech Mechanism) (Move, error) {
	if !n.started {
		return Move{}, ErrNotStarted
	}
	if to == n.cfg.Node {
		return Move{}, ErrSelf
	}
	if !n.up[to] {
		return Move{}, ErrTargetDown
	}
	for _, s := range n.sources {
		if s.move.CPID == cpid {
			return Move{}, ErrMoving
		}
	}
	if n.active() >= n.cfg.MaxMoves {
		return Move{}, ErrBusy
	}
	n.seq++
	mv := Move{ID: ID{Source: n.cfg.Node, Inc: n.cfg.Incarnation, N: n.seq}, CPID: cpid, Origin: origin,
		Source: n.cfg.Node, Target: to, Mech: mech}
	n.sources[mv.ID] = &source{move: mv, state: srcFreezing}
	n.act(Freeze, mv)
	return mv, nil
}

// Frozen reports the end of a Freeze: the process is stopped and its
// image ready to stream (err nil), or it could not be frozen.
func (n *Node) Frozen(now time.Time, id ID, err error) {
	s := n.sources[id]
	if s == nil || s.state != srcFreezing {
		return
	}
	switch {
	case err != nil:
		n.finishSource(now, s, Abort, fmt.Errorf("migrate: freeze: %w", err))
	case s.targetGone || !n.up[s.move.Target]:
		n.finishSource(now, s, Abort, fmt.Errorf("migrate: target node %d went down", s.move.Target))
	default:
		n.send(Message{Kind: MsgImage, To: s.move.Target, Move: s.move})
		s.state = srcSent
		s.deadline = now.Add(n.cfg.ConfirmTimeout)
	}
	n.flush(now)
}

// Restored reports the end of a Restore at the target: the copy is
// restored and stopped (err nil), or it could not be.
func (n *Node) Restored(now time.Time, id ID, err error) {
	t := n.targets[id]
	if t == nil || t.state != tgtRestoring {
		return
	}
	switch {
	case t.decided == Commit && err == nil:
		n.finishTarget(now, t, Commit)
	case t.decided != Undecided || t.orphan:
		n.finishTarget(now, t, Abort)
	case err != nil:
		n.send(Message{Kind: MsgRefuse, To: t.move.Source, Move: t.move, Reason: err.Error()})
		n.finishTarget(now, t, Abort)
	default:
		t.state = tgtConfirmed
		t.next = now.Add(n.cfg.Retry)
		n.send(Message{Kind: MsgConfirm, To: t.move.Source, Move: t.move})
	}
	n.flush(now)
}

// sendAbort tells the target an Abort was decided.
func (n *Node) sendAbort(now time.Time, s *source) {
	s.next = now.Add(n.cfg.Retry)
	n.send(Message{Kind: MsgAbort, To: s.move.Target, Move: s.move})
}

func (n *Node) onAbort(now time.Time, m Message) {
	mv := m.Move
	if mv.Target != n.cfg.Node || m.From != mv.Source || mv.ID.Source != mv.Source {
		return
	}
	if t := n.targets[mv.ID]; t != nil && sameMove(t.move, mv) {
		if t.state == tgtRestoring {
			t.decided = Abort
		} else {
			n.finishTarget(now, t, Abort)
		}
	} else if d, ok := n.done[doneKey{mv.ID, asTarget}]; !ok || d.outcome == Undecided {
		n.done[doneKey{mv.ID, asTarget}] = tomb{outcome: Abort, at: now}
	} else if d.outcome == Commit {
		return // cannot happen: the arbiter decided once
	}
	n.send(Message{Kind: MsgAborted, To: mv.Source, Move: mv})
}

func (n *Node) onAborted(now time.Time, m Message) {
	s := n.sources[m.Move.ID]
	if s == nil || s.state != srcThawing || m.From != s.move.Target || !sameMove(s.move, m.Move) {
		return
	}
	n.finishSource(now, s, Abort, s.err)
}

// finishSource acts on an outcome at the source.
func (n *Node) finishSource(now time.Time, s *source, o Outcome, err error) {
	delete(n.sources, s.move.ID)
	n.done[doneKey{s.move.ID, asSource}] = tomb{outcome: o, at: now}
	if o == Commit {
		n.act(End, s.move)
		n.rd.Results = append(n.rd.Results, Result{Move: s.move})
		return
	}
	n.act(Thaw, s.move)
	n.rd.Results = append(n.rd.Results, Result{Move: s.move, Err: err})
}

// finishTarget acts on an outcome at the target (Abort also stands for a
// copy discarded without a decision: it never confirmed).
func (n *Node) finishTarget(now time.Time, t *target, o Outcome) {
	delete(n.targets, t.move.ID)
	k := Resume
	if o != Commit {
		k = Discard
	}
	if t.state == tgtConfirmed || o == Commit || t.decided != Undecided {
		n.done[doneKey{t.move.ID, asTarget}] = tomb{outcome: o, at: now}
	} else {
		n.done[doneKey{t.move.ID, asTarget}] = tomb{outcome: Undecided, at: now}
	}
	n.act(k, t.move)
}

// Step takes a peer message. The shell sets m.From to the node its
// authenticated link names (never what the peer wrote), and drops
// messages not addressed to this node.
func (n *Node) Step(now time.Time, m Message) {
	if !n.started || m.To != n.cfg.Node {
		return
	}
	n.step(now, m)
	n.flush(now)
}

func (n *Node) step(now time.Time, m Message) {
	switch m.Kind {
	case MsgImage:
		n.onImage(now, m)
	case MsgConfirm, MsgRefuse:
		n.onReply(now, m)
	case MsgDecided:
		n.onDecided(now, m)
	case MsgQuery:
		n.onQuery(m)
	case MsgDecide:
		n.onDecide(now, m)
	case MsgKnow:
		n.onKnow(now, m)
	case MsgAbort:
		n.onAbort(now, m)
	case MsgAborted:
		n.onAborted(now, m)
	}
}

func (n *Node) onImage(now time.Time, m Message) {
	mv := m.Move
	if mv.Target != n.cfg.Node || m.From != mv.Source || mv.ID.Source != mv.Source {
		return
	}
	if _, ok := n.targets[mv.ID]; ok {
		return
	}
	if _, ok := n.done[doneKey{mv.ID, asTarget}]; ok {
		return
	}
	if !n.up[mv.Source] {
		return
	}
	if n.active() >= n.cfg.MaxMoves {
		n.send(Message{Kind: MsgRefuse, To: mv.Source, Move: mv, Reason: ErrBusy.Error()})
		return
	}
	for _, t := range n.targets {
		if t.move.CPID == mv.CPID {
			// A late image of an earlier move of the same process.
			n.send(Message{Kind: MsgRefuse, To: mv.Source, Move: mv, Reason: ErrMoving.Error()})
			return
		}
	}
	n.targets[mv.ID] = &target{move: mv, state: tgtRestoring}
	n.act(Restore, mv)
}

func (n *Node) onReply(now time.Time, m Message) {
	s := n.sources[m.Move.ID]
	if s == nil || s.state != srcSent || m.From != s.move.Target {
		return
	}
	if m.Kind == MsgConfirm {
		n.decide(now, s, Commit, "")
		return
	}
	n.decide(now, s, Abort, "the target could not restore: "+m.Reason)
}

// decide moves the source to asking its arbiter for want.
func (n *Node) decide(now time.Time, s *source, want Outcome, reason string) {
	s.state = srcDeciding
	s.want = want
	s.reason = reason
	n.sendDecide(now, s)
}

func (n *Node) sendDecide(now time.Time, s *source) {
	s.next = now.Add(n.cfg.Retry)
	if a, ok := n.arbiterOf(s.move.Origin); ok {
		n.send(Message{Kind: MsgDecide, To: a, Move: s.move, Outcome: s.want, Ballot: s.promised, Reason: s.reason})
	}
}

// fromArbiter says whether m comes from the node this one believes
// decides its move now, at the ballot it names.
func (n *Node) fromArbiter(m Message) bool {
	a, ok := n.arbiterOf(m.Move.Origin)
	return ok && a == m.From && m.Ballot.Node == m.From
}

func (n *Node) onDecided(now time.Time, m Message) {
	if !n.fromArbiter(m) {
		return
	}
	if s := n.sources[m.Move.ID]; s != nil && sameMove(s.move, m.Move) {
		if m.Ballot.Less(s.promised) || s.state == srcFreezing || m.Outcome == Undecided {
			return
		}
		if s.state == srcThawing {
			return
		}
		if m.Outcome == Commit {
			n.finishSource(now, s, Commit, nil)
			return
		}
		reason := s.reason
		if m.Reason != "" {
			reason = m.Reason
		}
		if reason == "" {
			reason = "aborted"
		}
		s.err = fmt.Errorf("migrate: %s to node %d failed: %s", s.move.ID, s.move.Target, reason)
		if !n.up[s.move.Target] {
			n.finishSource(now, s, Abort, s.err)
			return
		}
		s.state = srcThawing
		s.thawBy = now.Add(n.cfg.AbortWait)
		n.sendAbort(now, s)
	}
	if m.Move.Target == n.cfg.Node && m.Outcome == Abort && n.targets[m.Move.ID] == nil {
		// The decision overtook the image: refuse the image when it comes.
		if _, ok := n.done[doneKey{m.Move.ID, asTarget}]; !ok {
			n.done[doneKey{m.Move.ID, asTarget}] = tomb{outcome: Abort, at: now}
		}
	}
	if t := n.targets[m.Move.ID]; t != nil && sameMove(t.move, m.Move) {
		if m.Ballot.Less(t.promised) || m.Outcome == Undecided {
			return
		}
		if t.state == tgtRestoring {
			t.decided = m.Outcome
			return
		}
		n.finishTarget(now, t, m.Outcome)
	}
}

func (n *Node) onQuery(m Message) {
	if !n.fromArbiter(m) {
		return
	}
	know := Message{Kind: MsgKnow, To: m.From, Move: m.Move, Ballot: m.Ballot}
	switch n.cfg.Node {
	case m.Move.Source:
		if s := n.sources[m.Move.ID]; s != nil {
			if s.first == (Ballot{}) {
				s.first = m.Ballot
			}
			know.Prior = s.first
			if s.promised.Less(m.Ballot) {
				s.promised = m.Ballot
			}
			know.Active = true
			switch s.state {
			case srcDeciding:
				know.Want, know.Reason = s.want, s.reason
			case srcThawing:
				// It accepted an Abort and will thaw.
				know.Outcome, know.Active = Abort, false
			}
		} else if d, ok := n.done[doneKey{m.Move.ID, asSource}]; ok {
			know.Outcome = d.outcome
		} else if m.Move.ID.Inc != n.cfg.Incarnation {
			know.Lost = true
		}
	case m.Move.Target:
		if t := n.targets[m.Move.ID]; t != nil {
			if t.promised.Less(m.Ballot) {
				t.promised = m.Ballot
			}
			know.Confirmed = t.state == tgtConfirmed
		} else if d, ok := n.done[doneKey{m.Move.ID, asTarget}]; ok {
			know.Outcome = d.outcome
		}
	default:
		return
	}
	n.send(know)
}

// Membership gives the Node a new view of clmsd's: its epoch and the
// nodes UP.
func (n *Node) Membership(now time.Time, epoch uint64, up []uint32) {
	if !n.started || epoch <= n.epoch {
		return
	}
	n.setView(epoch, up)
	for _, id := range sortedIDs(n.sources) {
		s := n.sources[id]
		if n.up[s.move.Target] {
			if s.state == srcDeciding {
				n.sendDecide(now, s)
			}
			continue
		}
		switch s.state {
		case srcFreezing:
			s.targetGone = true
		case srcSent:
			n.decide(now, s, Abort, fmt.Sprintf("target node %d went down before confirming", s.move.Target))
		case srcDeciding:
			n.sendDecide(now, s)
		case srcThawing:
			n.finishSource(now, s, Abort, s.err)
		}
	}
	for _, id := range sortedIDs(n.targets) {
		t := n.targets[id]
		if n.up[t.move.Source] {
			continue
		}
		if t.state == tgtRestoring {
			t.orphan = true
			continue
		}
		n.targetAsk(now, t)
	}
	for _, id := range sortedIDs(n.arbs) {
		a := n.arbs[id]
		if me, ok := n.arbiterOf(a.move.Origin); !ok || me != n.cfg.Node || !n.up[n.cfg.Node] {
			if a.outcome == Undecided {
				delete(n.arbs, id)
			}
			continue
		}
		if a.outcome == Undecided {
			// A party may have gone DOWN or come back as a new
			// vprocd: ask again.
			a.answers = map[uint32]Message{}
			n.query(now, a)
			n.evaluate(now, a)
		}
	}
	n.flush(now)
}

// targetAsk has a confirmed target ask its arbiter: to commit when the
// source is DOWN (its copy died with it), else what was decided.
func (n *Node) targetAsk(now time.Time, t *target) {
	t.next = now.Add(n.cfg.Retry)
	want := Undecided
	if !n.up[t.move.Source] {
		want = Commit
	}
	if a, ok := n.arbiterOf(t.move.Origin); ok {
		n.send(Message{Kind: MsgDecide, To: a, Move: t.move, Outcome: want, Ballot: t.promised})
	}
}

// Tick moves the Node's timers: the confirmation's deadline, and the
// retries of unanswered Decides and Queries.
func (n *Node) Tick(now time.Time) {
	if !n.started {
		return
	}
	for _, id := range sortedIDs(n.sources) {
		s := n.sources[id]
		switch {
		case s.state == srcSent && !now.Before(s.deadline):
			n.decide(now, s, Abort, fmt.Sprintf("target node %d did not confirm within %v", s.move.Target, n.cfg.ConfirmTimeout))
		case s.state == srcDeciding && !now.Before(s.next):
			n.sendDecide(now, s)
		case s.state == srcThawing && !now.Before(s.thawBy):
			n.finishSource(now, s, Abort, s.err)
		case s.state == srcThawing && !now.Before(s.next):
			n.sendAbort(now, s)
		}
	}
	for _, id := range sortedIDs(n.targets) {
		t := n.targets[id]
		if t.state == tgtConfirmed && !now.Before(t.next) {
			n.targetAsk(now, t)
		}
	}
	for _, id := range sortedIDs(n.arbs) {
		a := n.arbs[id]
		if a.outcome == Undecided && !now.Before(a.next) {
			// Ask again whoever has not answered, and the source that
			// answered without a wish yet (it may have asked another
			// arbiter since).
			if src, ok := a.answers[a.move.Source]; ok && src.Active && src.Want == Undecided && !a.wantCmt && !a.wantAbort {
				delete(a.answers, a.move.Source)
			}
			n.query(now, a)
		}
		if a.outcome != Undecided && now.Sub(a.decideAt) > keep {
			delete(n.arbs, id)
		}
	}
	for k, d := range n.done {
		if now.Sub(d.at) > keep {
			delete(n.done, k)
		}
	}
	n.flush(now)
}

// NextDeadline is when Tick has something to do, or zero.
func (n *Node) NextDeadline() time.Time {
	var at time.Time
	min := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	for _, s := range n.sources {
		switch s.state {
		case srcSent:
			min(s.deadline)
		case srcDeciding, srcThawing:
			min(s.next)
		}
	}
	for _, t := range n.targets {
		if t.state == tgtConfirmed {
			min(t.next)
		}
	}
	for _, a := range n.arbs {
		if a.outcome == Undecided {
			min(a.next)
		}
	}
	return at
}

func sortedIDs[V any](m map[ID]V) []ID {
	ids := make([]ID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, cmpID)
	return ids
}

func cmpID(a, b ID) int {
	if c := cmp.Compare(a.Source, b.Source); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Inc, b.Inc); c != 0 {
		return c
	}
	return cmp.Compare(a.N, b.N)
}
