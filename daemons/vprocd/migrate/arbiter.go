package migrate

import (
	"fmt"
	"time"
)

// arbsPerMove bounds the moves a node arbitrates (decided ones are kept
// a while to answer late questions) at this many times MaxMoves.
const arbsPerMove = 64

// isArbiterFor says whether node decides origin's moves in this view.
func (n *Node) isArbiterFor(origin, node uint32) bool {
	a, ok := n.arbiterOf(origin)
	return ok && a == node
}

// isArbiter says whether this node decides the moves of origin's
// processes in its current view.
func (n *Node) isArbiter(origin uint32) bool {
	a, ok := n.arbiterOf(origin)
	return ok && a == n.cfg.Node && n.up[n.cfg.Node]
}

// sameMove says whether a message's move is the one a record holds (a
// peer cannot change a move's parties once the arbiter knows it).
func sameMove(a, b Move) bool { return a == b }

// onDecide takes a party's request: the source's wish (commit after the
// target's confirmation, abort otherwise), or a confirmed target asking
// what was decided (commit when its source looks DOWN).
func (n *Node) onDecide(now time.Time, m Message) {
	mv := m.Move
	fromSource, fromTarget := m.From == mv.Source, m.From == mv.Target
	if (!fromSource && !fromTarget) || mv.ID.Source != mv.Source || mv.Source == mv.Target || !n.isArbiter(mv.Origin) {
		return
	}
	if fromTarget && m.Outcome == Abort {
		return
	}
	a := n.arbs[mv.ID]
	if a != nil && !sameMove(a.move, mv) {
		return
	}
	if a != nil && a.ballot.Less(m.Ballot) {
		// The party promised a later arbiter (this one's view was
		// behind): this record is stale, start again above it.
		delete(n.arbs, mv.ID)
		a = nil
	}
	if a != nil && a.outcome != Undecided {
		n.send(Message{Kind: MsgDecided, To: m.From, Move: a.move, Outcome: a.outcome, Ballot: a.ballot, Reason: a.reason})
		return
	}
	if a == nil {
		if len(n.arbs) >= arbsPerMove*n.cfg.MaxMoves {
			// A flood of moves (or of made-up ones): the parties retry.
			return
		}
		b := Ballot{Epoch: n.epoch, Node: n.cfg.Node}
		if !m.Ballot.Less(b) {
			b.Epoch = m.Ballot.Epoch + 1
		}
		a = &arb{move: mv, ballot: b, answers: map[uint32]Message{}}
		n.arbs[mv.ID] = a
		n.want(a, m, fromSource)
		n.query(now, a)
		n.evaluate(now, a)
		return
	}
	n.want(a, m, fromSource)
	n.evaluate(now, a)
}

// want records what the source asked for.
func (n *Node) want(a *arb, m Message, fromSource bool) {
	if !fromSource {
		return
	}
	switch m.Outcome {
	case Commit:
		a.wantCmt = true
	case Abort:
		a.wantAbort = true
		a.reason = m.Reason
	}
}

// query asks the parties that are UP and have not answered what they
// know, and has them promise this arbiter's ballot.
func (n *Node) query(now time.Time, a *arb) {
	a.next = now.Add(n.cfg.Retry)
	for _, p := range []uint32{a.move.Source, a.move.Target} {
		if _, ok := a.answers[p]; ok || !n.up[p] {
			continue
		}
		n.send(Message{Kind: MsgQuery, To: p, Move: a.move, Ballot: a.ballot})
	}
}

func (n *Node) onKnow(now time.Time, m Message) {
	a := n.arbs[m.Move.ID]
	if a == nil || a.outcome != Undecided || m.Ballot != a.ballot || !sameMove(a.move, m.Move) {
		return
	}
	if m.From != a.move.Source && m.From != a.move.Target {
		return
	}
	a.answers[m.From] = m
	if m.From == a.move.Source && m.Want != Undecided {
		n.want(a, Message{Outcome: m.Want, Reason: m.Reason}, true)
	}
	n.evaluate(now, a)
}

// evaluate decides once every party UP has answered the Query:
//
//   - a decision a party acted on stands;
//   - the source gone (DOWN, or a new vprocd that lost its frozen
//     original): commit onto the target's confirmed copy unless the
//     process is known to run elsewhere (Locate), else abort;
//   - the source still holding its original: its wish decides. Commit
//     holds even when the target has since gone (the process is lost with
//     it: an earlier arbiter may have committed and the target resumed),
//     except when no other arbiter asked the source before (its first
//     ballot is this one), so none can have decided: then the source
//     keeps the process;
//   - the source without a wish yet: wait for it (it asks on the
//     confirmation or its timeout);
//   - the source that forgot the move: abort (it holds no copy).
func (n *Node) evaluate(now time.Time, a *arb) {
	for _, ans := range []Message{a.answers[a.move.Source], a.answers[a.move.Target]} {
		if ans.Outcome != Undecided {
			n.decideArb(now, a, ans.Outcome, "")
			return
		}
	}
	for _, p := range []uint32{a.move.Source, a.move.Target} {
		if _, ok := a.answers[p]; !ok && n.up[p] {
			return
		}
	}
	src, tgt := a.answers[a.move.Source], a.answers[a.move.Target]
	confirmed := n.up[a.move.Target] && tgt.Confirmed
	var gone string
	if !n.up[a.move.Target] {
		gone = fmt.Sprintf("target node %d went down", a.move.Target)
	} else if !tgt.Confirmed {
		gone = "the target holds no confirmed copy"
	}
	switch {
	case !n.up[a.move.Source] || src.Lost:
		w, known := n.where[a.move.CPID]
		switch {
		case !confirmed:
			n.decideArb(now, a, Abort, gone)
		case known && w != a.move.Source && w != a.move.Target:
			// A stale copy: the process lives on elsewhere.
			n.decideArb(now, a, Abort, fmt.Sprintf("the process runs on node %d", w))
		default:
			n.decideArb(now, a, Commit, "")
		}
	case !src.Active:
		n.decideArb(now, a, Abort, "the source forgot the move")
	case a.wantAbort:
		n.decideArb(now, a, Abort, a.reason)
	case a.wantCmt && !confirmed && (src.Prior == (Ballot{}) || src.Prior == a.ballot):
		n.decideArb(now, a, Abort, gone+" before the commit")
	case a.wantCmt:
		n.decideArb(now, a, Commit, "")
	}
}

// decideArb is the commit point: the outcome is recorded here, once per
// ballot, and told to both parties.
func (n *Node) decideArb(now time.Time, a *arb, o Outcome, reason string) {
	a.outcome, a.reason, a.decideAt = o, reason, now
	if o == Commit {
		n.where[a.move.CPID] = a.move.Target
		n.rd.Locations = append(n.rd.Locations, Location{CPID: a.move.CPID, Node: a.move.Target})
	}
	for _, p := range []uint32{a.move.Source, a.move.Target} {
		n.send(Message{Kind: MsgDecided, To: p, Move: a.move, Outcome: o, Ballot: a.ballot, Reason: reason})
	}
}
