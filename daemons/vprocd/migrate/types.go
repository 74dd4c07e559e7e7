package migrate

import (
	"fmt"
	"time"
)

// Mechanism is how a process is frozen and brought back.
type Mechanism uint8

const (
	// CRIU dumps an unmodified process and restores it on the target.
	CRIU Mechanism = iota + 1
	// Cooperative asks a registered program for its state (package coop)
	// and starts the same executable on the target with it.
	Cooperative
)

func (m Mechanism) String() string {
	switch m {
	case CRIU:
		return "criu"
	case Cooperative:
		return "coop"
	}
	return fmt.Sprintf("mechanism(%d)", uint8(m))
}

// ID names one move cluster-wide: the source node, its vprocd's
// incarnation and a counter of that incarnation.
type ID struct {
	Source uint32
	Inc    uint64
	N      uint64
}

func (id ID) String() string { return fmt.Sprintf("%d.%d.%d", id.Source, id.Inc, id.N) }

// Move is what every message of a move carries: which process, whose
// origin decides, from where to where, how.
type Move struct {
	ID     ID
	CPID   uint64
	Origin uint32
	Source uint32
	Target uint32
	Mech   Mechanism
}

// Outcome is the decision of a move, taken once by its arbiter.
type Outcome uint8

const (
	// Undecided: no decision known.
	Undecided Outcome = iota
	// Commit: the process lives on at the target; the source's copy ends.
	Commit
	// Abort: the process lives on at the source; the target's copy ends.
	Abort
)

func (o Outcome) String() string {
	switch o {
	case Undecided:
		return "undecided"
	case Commit:
		return "commit"
	case Abort:
		return "abort"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// Ballot orders the arbiters of one move: the membership epoch in which
// the arbiter took the move on, then its node. A party never acts on a
// decision older than a ballot it has answered a Query for.
type Ballot struct {
	Epoch uint64
	Node  uint32
}

// Less orders ballots.
func (b Ballot) Less(o Ballot) bool {
	if b.Epoch != o.Epoch {
		return b.Epoch < o.Epoch
	}
	return b.Node < o.Node
}

func (b Ballot) String() string { return fmt.Sprintf("%d/%d", b.Epoch, b.Node) }

// Kind is a message's kind.
type Kind uint8

const (
	// MsgImage (source → target): restore this move; the image or the
	// cooperative state follows on the shell's stream.
	MsgImage Kind = iota + 1
	// MsgConfirm (target → source): restored, stopped, ready to resume.
	MsgConfirm
	// MsgRefuse (target → source): could not restore (Reason).
	MsgRefuse
	// MsgDecide (source or target → arbiter): decide Outcome, or
	// (Undecided) say what was decided; Ballot is the highest the party
	// promised.
	MsgDecide
	// MsgDecided (arbiter → source and target): the outcome at Ballot.
	MsgDecided
	// MsgQuery (arbiter → source and target): a new arbiter asks what
	// the party knows, and the party promises to ignore older ballots.
	MsgQuery
	// MsgKnow (party → arbiter): the answer to a Query: the outcome the
	// party acted on, if any, and (target) whether it holds a confirmed
	// copy.
	MsgKnow
	// MsgAbort (source → target): the arbiter decided Abort; drop the
	// copy and acknowledge. The source thaws only after the
	// acknowledgement (or the target's NODEDOWN), so a copy the target
	// still holds can never outlive the original's thaw.
	MsgAbort
	// MsgAborted (target → source): the target will never resume this
	// move's copy.
	MsgAborted
)

var kindNames = map[Kind]string{MsgImage: "image", MsgConfirm: "confirm", MsgRefuse: "refuse",
	MsgDecide: "decide", MsgDecided: "decided", MsgQuery: "query", MsgKnow: "know", MsgAbort: "abort", MsgAborted: "aborted"}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Message is one peer message of the protocol. The shell carries it on
// vprocd's peer link (reliable and ordered while both ends live); the
// core copes with any message being lost or late.
type Message struct {
	Kind     Kind
	From, To uint32
	Move     Move
	// Outcome is the wanted outcome (Decide), the decision (Decided) or
	// what the party acted on (Know).
	Outcome Outcome
	Ballot  Ballot
	// Confirmed (Know from the target): it holds a restored copy.
	Confirmed bool
	// Active (Know from the source): it still holds the frozen original
	// and drives the move. Lost (Know from the source): the move belongs
	// to an earlier vprocd of the source, whose frozen original is gone.
	Active bool
	Lost   bool
	// Prior (Know from the source): the first ballot any arbiter asked
	// it for; this Query's own when no other arbiter asked before.
	Prior Ballot
	// Want (Know from the source): what it asks for, if it has asked.
	Want   Outcome
	Reason string
}

func (m Message) String() string {
	s := fmt.Sprintf("%s %d->%d move=%s", m.Kind, m.From, m.To, m.Move.ID)
	switch m.Kind {
	case MsgDecide, MsgDecided, MsgKnow:
		s += " " + m.Outcome.String()
	}
	if m.Kind == MsgDecided || m.Kind == MsgQuery || m.Kind == MsgKnow {
		s += " ballot=" + m.Ballot.String()
	}
	if m.Confirmed {
		s += " confirmed"
	}
	if m.Active {
		s += " active"
	}
	if m.Want != Undecided {
		s += " want=" + m.Want.String()
	}
	if m.Lost {
		s += " lost"
	}
	if m.Reason != "" {
		s += fmt.Sprintf(" reason=%q", m.Reason)
	}
	return s
}

// ActionKind is what the shell does to a process copy.
type ActionKind uint8

const (
	// Freeze (source): stop the process and checkpoint it (CRIU dump, or
	// the cooperative checkpoint request), streaming the image to the
	// target after MsgImage; report with Node.Frozen.
	Freeze ActionKind = iota + 1
	// Thaw (source): the move failed; let the original run on.
	Thaw
	// End (source): the move committed; kill the frozen original (its
	// stdio is handed to the target's copy).
	End
	// Restore (target): restore the received image stopped (CRIU restore
	// in a fresh PID namespace, or start the program with its state and
	// hold it); report with Node.Restored.
	Restore
	// Resume (target): the move committed; let the copy run and re-plumb
	// the stdio streams to it.
	Resume
	// Discard (target): kill the restored copy and drop what was received.
	Discard
)

var actionNames = map[ActionKind]string{Freeze: "freeze", Thaw: "thaw", End: "end", Restore: "restore", Resume: "resume", Discard: "discard"}

func (a ActionKind) String() string {
	if s, ok := actionNames[a]; ok {
		return s
	}
	return fmt.Sprintf("action(%d)", uint8(a))
}

// Action asks the shell to act on this node's copy of a move's process.
type Action struct {
	Kind ActionKind
	Move Move
}

// Result ends a move at its source, for whoever asked for it (`ssi
// migrate`, the leveler): Err nil means the process now runs at the
// target; otherwise it runs on at the source and Err says why.
type Result struct {
	Move Move
	Err  error
}

// Location is the arbiter's record that a process now lives at Node (the
// shell updates the origin's table, pgroup).
type Location struct {
	CPID uint64
	Node uint32
}

// Ready is what the core wants done, taken by the shell in order:
// Actions first, then Messages, Locations and Results.
type Ready struct {
	Actions   []Action
	Messages  []Message
	Locations []Location
	Results   []Result
}

// Empty says there is nothing to do.
func (r Ready) Empty() bool {
	return len(r.Actions) == 0 && len(r.Messages) == 0 && len(r.Locations) == 0 && len(r.Results) == 0
}

// Config is one node's migration settings.
type Config struct {
	// Node is this node's number; Incarnation its vprocd's.
	Node        uint32
	Incarnation uint64
	// ConfirmTimeout bounds the time from the image sent to the
	// target's confirmation (vprocd.migrate.confirm_timeout, 30s): after
	// it the source asks to abort.
	ConfirmTimeout time.Duration
	// Retry is how often an unanswered Decide or Query is sent again
	// (vprocd.migrate.retry, 1s).
	Retry time.Duration
	// AbortWait bounds how long a source whose move aborted keeps its
	// original frozen waiting for the target's acknowledgement
	// (vprocd.migrate.abort_wait, 10s) while the target is UP but
	// unreachable; after it the original thaws anyway (see the package
	// doc for the risk this leaves).
	AbortWait time.Duration
	// MaxMoves bounds the moves this node takes part in at once, as a
	// source or a target (vprocd.migrate.max_moves, 16).
	MaxMoves int
}

// Defaults for Config's zero fields.
const (
	DefaultConfirmTimeout = 30 * time.Second
	DefaultRetry          = time.Second
	DefaultMaxMoves       = 16
	DefaultAbortWait      = 10 * time.Second
)

func (c Config) withDefaults() Config {
	if c.ConfirmTimeout <= 0 {
		c.ConfirmTimeout = DefaultConfirmTimeout
	}
	if c.Retry <= 0 {
		c.Retry = DefaultRetry
	}
	if c.AbortWait <= 0 {
		c.AbortWait = DefaultAbortWait
	}
	if c.MaxMoves <= 0 {
		c.MaxMoves = DefaultMaxMoves
	}
	return c
}
