package pgroup

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

// Proc is the record of one process started through vprocd.
type Proc struct {
	// CPID is its cluster pid; CPID.Node() is its origin.
	CPID cpid.CPID
	// Node is where it runs now, PID its pid there.
	Node uint32
	PID  int32
	// PGID and SID are its cluster process group and session: the cpid of
	// the group's and the session's leader (on the origin, the caller's
	// process group and session), so -PGID reaches it.
	PGID cpid.CPID
	SID  cpid.CPID
	// UID is the uid it runs as.
	UID uint32
	// TTY: the `ssi exec` that started it has a controlling terminal on
	// the origin (it was started from an interactive session, not from
	// nohup, setsid or a service): when the origin goes DOWN it gets
	// SIGHUP, as that terminal's hangup would send it; without, it runs on.
	TTY bool
	// Detached: no `ssi exec` on the origin waits for it and forwards
	// signals to it (started with --detach, or its origin went DOWN).
	Detached bool
}

func (p Proc) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s@%d/%d pg=%s sid=%s uid=%d", p.CPID, p.Node, p.PID, p.PGID, p.SID, p.UID)
	if p.TTY {
		b.WriteString(" tty")
	}
	if p.Detached {
		b.WriteString(" detached")
	}
	return b.String()
}

// Event is what Step takes: one of the types below.
type Event interface{ event() }

// Started: a process was started through vprocd. The shell steps it on
// the origin (when the target confirmed the start) and on the node where
// it runs (when it spawned it); one node may be both.
type Started struct{ Proc Proc }

// Ended: the process CPID that ran on Node ended. The shell steps it on
// the node where it ran (Node is this node) and on the origin when it
// learns it (the exit status of a waiting exec, or the Ended this core
// sends, see Ready.Sends).
type Ended struct {
	CPID cpid.CPID
	Node uint32 // PID, when not 0, is its pid there: a record of the same cpid
	// with another pid (a new process given that cpid since, on the same
	// node) is not ended by a late Ended of the old one.
	PID int32
}

// Moved: the process Proc.CPID moved (package migrate) and now runs on
// Proc.Node as Proc.PID (0: its pid there is not known yet). The shell
// steps it on the arbiter that recorded the move (the origin's table
// follows it), on the node it moved to (which then runs it, the whole
// Proc being its record there) and on the origin again when it learns
// the pid. Its copy on the node it left ends as any process does (Ended
// of that node, which no longer matches the origin's record).
type Moved struct{ Proc Proc }

// NodeDown and NodeUp are clmsd's membership events, in epoch order.
type NodeDown struct {
	Epoch uint64
	Node  uint32
}

// NodeUp: see NodeDown. A node that comes UP again is a new vprocd.
type NodeUp struct {
	Epoch uint64
	Node  uint32
}

// Report is a peer's message: the full set of the processes of origin
// Origin that run on From, as From saw at Epoch. From sends it to the
// surrogate of a DOWN origin (and again to a new surrogate), and to an
// origin that comes back UP (handing its processes back).
type Report struct {
	From   uint32
	Origin uint32
	Epoch  uint64
	Procs  []Proc
}

// Lookup asks where the process CPID runs; ID names the answer.
type Lookup struct {
	ID   uint64
	CPID cpid.CPID
}

// Kill asks to send Signal to Target for the caller's uid. A single
// process is routed like a Lookup. A group (kill -CPGID) is sent by the
// shell to every UP node's vprocd, and each signals the members running on
// it: so every member is reached once, wherever its origin is.
type Kill struct {
	ID     uint64
	Caller uint32
	Target cpid.Target
	Signal syscall.Signal
}

func (Started) event()  {}
func (Ended) event()    {}
func (Moved) event()    {}
func (NodeDown) event() {}
func (NodeUp) event()   {}
func (Report) event()   {}
func (Lookup) event()   {}
func (Kill) event()     {}

// Send is a message for a peer vprocd: exactly one of Report and Ended.
type Send struct {
	To     uint32
	Report *Report
	Ended  *Ended
}

// Signal is a signal to deliver on Node: to the process PID there, or
// with Group to the process group it leads there (vprocd starts each
// process as the leader of its own group on its node, so its children
// are reached too). The node that delivers it must first check
// access.Signal(Caller, the real uid of each process it signals) on the
// process as it is there, the record may be stale.
type Signal struct {
	Node   uint32
	PID    int32
	Group  bool
	CPID   cpid.CPID
	Signal syscall.Signal
	Caller uint32
}

// Exit ends a waiting `ssi exec`: its process is lost with the node it ran
// on. Status is 255; Reason is one line for the user.
type Exit struct {
	CPID   cpid.CPID
	Status int
	Reason string
}

// Answer answers the Lookup or Kill with the same ID.
type Answer struct {
	ID uint64
	// Redirect, when not 0: ask that node instead (the origin, or the
	// surrogate of a DOWN origin). The shell forwards the request there.
	Redirect uint32
	// Proc is the record found, with Found.
	Proc  Proc
	Found bool
	// Local: the cpid's origin is this node and it has no record of it:
	// if this node has a process CPID.PID() it is that one (a plain local
	// process, which the shell finds in /proc).
	Local bool
	// Signaled and Denied count, for a Kill, the records signaled (see
	// Ready.Signals) and those the caller may not signal.
	Signaled, Denied int
	// Err is why not: ErrUnknown, ErrNoNode, or a refusal wrapping
	// access.ErrPermission.
	Err error
}

// Ready is what the core asks the shell to do, in order within each list.
type Ready struct {
	Sends   []Send
	Signals []Signal
	Exits   []Exit
	Answers []Answer
}

// Errors of Step and of answers.
var (
	// ErrUnknown: no process has that cpid.
	ErrUnknown = errors.New("no such process")
	// ErrNoNode: no node is UP to ask.
	ErrNoNode = errors.New("no node is UP")
	// ErrInUse: Started with a cpid that has a live record.
	ErrInUse = errors.New("cpid in use")
	// ErrDown: Started on a node that is not UP (it went down before the
	// start was confirmed): the waiting exec ends with 255.
	ErrDown = errors.New("node is down")
	// ErrInvalid: an event that cannot be right.
	ErrInvalid = errors.New("invalid event")
)
