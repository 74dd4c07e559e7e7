package election

import (
	"errors"
	"fmt"
	"time"
)

// State is where this node stands in the election.
type State int

// The states of a Core.
const (
	// Booting: stopping whatever singleton runs here before queueing
	// (a restarted initfailover may have left some running), killing
	// what still runs KillAfter the boot.
	Booting State = iota + 1
	// Waiting: queued for the init lock.
	Waiting
	// Holding: holds the lock, waits until the previous init's services
	// are surely gone before starting them.
	Holding
	// Running: the init node, its services started.
	Running
	// Stopping: stopping the services (lock lost, moving the role, or
	// shutting down).
	Stopping
	// Done: shut down; the lock released.
	Done
)

var stateNames = [...]string{Booting: "booting", Waiting: "waiting", Holding: "holding", Running: "running", Stopping: "stopping", Done: "done"}

func (s State) String() string {
	if s >= Booting && s <= Done {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Kind is what an Action asks the shell to do.
type Kind int

// The kinds of Action.
const (
	// RequestLock: queue for the init lock (on a new session if the old
	// one ended); report Granted or Lost.
	RequestLock Kind = iota + 1
	// ReleaseLock: unlock the init lock writing Value (Valid) or
	// invalidating the value block (!Valid).
	ReleaseLock
	// StartUnits: start the init target and the listed services.
	StartUnits
	// StopUnits: stop them; report UnitsStopped when none runs.
	StopUnits
	// KillUnits: SIGKILL what of them still runs; report UnitsStopped.
	KillUnits
)

var kindNames = [...]string{RequestLock: "request-lock", ReleaseLock: "release-lock", StartUnits: "start", StopUnits: "stop", KillUnits: "kill"}

func (k Kind) String() string {
	if k >= RequestLock && k <= KillUnits {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Action is one thing for the shell to do, in order.
type Action struct {
	Kind Kind
	// Value and Valid are the value block a ReleaseLock writes.
	Value [RecordLen]byte
	Valid bool
}

func (a Action) String() string {
	if a.Kind != ReleaseLock {
		return a.Kind.String()
	}
	if !a.Valid {
		return "release-lock invalid"
	}
	r, err := Decode(a.Value[:])
	if err != nil {
		return "release-lock foreign"
	}
	s := fmt.Sprintf("release-lock clean=%v holder=%d", r.Clean, r.Holder)
	if r.Next != 0 {
		s += fmt.Sprintf(" next=%d move=%d/%d", r.Next, r.MoveBy, r.Move)
	}
	return s
}

// Errors of Move.
var (
	// ErrNotInit: this node is not the running init node.
	ErrNotInit = errors.New("this node is not the init node")
	// ErrNotUp: the target is not an UP member.
	ErrNotUp = errors.New("node is not UP")
	// ErrBusy: a hand-over or stop is already under way.
	ErrBusy = errors.New("the init role is already being handed over")
)

// Config is what a Core needs.
type Config struct {
	// Self is this node's number.
	Self uint32
	// StopTimeout is how long the services get to stop (initfailover.
	// stop_timeout): a node that loses the lock kills them after
	// KillAfter(StopTimeout), and a node granted the lock without a clean
	// hand-over starts them StopTimeout after the grant.
	StopTimeout time.Duration
	// Nonce is a random number drawn at each start of initfailover: it
	// goes into this node's move ids, whose counter starts again with
	// the process, so that no node mistakes a new move for one it saw.
	Nonce uint64
	// Prefer, when set, names the node that should hold the lock when
	// this node is granted it without a hand-over to an UP node (a first
	// grant, a holder that died, a clean release naming nobody): 0 or
	// Self takes it here, another UP node is handed it as a move would
	// (once; the record keeps whether the release was clean). It must be
	// a pure function of up (the UP members) and its own inputs.
	// openssi-keepalived's placement rules use it; initfailover leaves it
	// nil (any node will do).
	Prefer func(up map[uint32]bool) uint32
}

// KillAfter is how long after losing the lock the old init kills what
// still runs of its services: three quarters of the stop timeout, so that
// the kill has landed before a new init starts them.
func KillAfter(stopTimeout time.Duration) time.Duration { return stopTimeout - stopTimeout/4 }

// why says why the services are being stopped.
type why int

const (
	forLost why = iota + 1
	forMove
	forShutdown
)

type moveID struct {
	by, seq uint32
	boot    uint64
}

// Core is one node's view of the election. Not safe for concurrent use.
type Core struct {
	cfg     Config
	state   State
	since   time.Time
	actions []Action

	up      map[uint32]bool
	passed  map[moveID]bool
	moveSeq uint32

	// Holding: when the services may start.
	startAt time.Time
	// Stopping: why, when to kill, whether killed, whether the lock is
	// still held, and the hand-over's target.
	stopWhy  why
	killAt   time.Time
	killed   bool
	holds    bool
	moveTo   uint32
	moveByMe moveID
}

// New returns a core that has not started.
func New(cfg Config) *Core {
	return &Core{cfg: cfg, up: map[uint32]bool{}, passed: map[moveID]bool{}}
}

// State returns the state and since when.
func (c *Core) State() (State, time.Time) { return c.state, c.since }

// IsInit reports whether this node holds the role (Holding or Running).
func (c *Core) IsInit() bool { return c.state == Holding || c.state == Running }

// Ready returns the actions accumulated since the last call, in order.
func (c *Core) Ready() []Action {
	a := c.actions
	c.actions = nil
	return a
}

// Deadline returns when Tick next has something to do (zero: nothing).
func (c *Core) Deadline() time.Time {
	switch {
	case c.state == Holding:
		return c.startAt
	case (c.state == Stopping || c.state == Booting) && !c.killed:
		return c.killAt
	}
	return time.Time{}
}

func (c *Core) do(k Kind)                  { c.actions = append(c.actions, Action{Kind: k}) }
func (c *Core) set(now time.Time, s State) { c.state, c.since = s, now }

// SetUp records whether node is an UP member.
func (c *Core) SetUp(node uint32, up bool) {
	if up {
		c.up[node] = true
	} else {
		delete(c.up, node)
	}
}

// Start begins: whatever singleton runs here is stopped first (this node
// is not init until granted), then the node queues. What a previous
// process left running is treated as a lost lock's services: the lock
// went with that process's session, no earlier than now, so a new holder
// may start them StopTimeout after its grant; they are killed at
// now + KillAfter unless stopped by then.
func (c *Core) Start(now time.Time) {
	c.set(now, Booting)
	c.stopWhy, c.killed, c.holds = forLost, false, false
	c.killAt = now.Add(KillAfter(c.cfg.StopTimeout))
	c.do(StopUnits)
}

// Granted handles the grant of the init lock with its value block
// (valid: dlmd says it holds a value).
func (c *Core) Granted(now time.Time, value [RecordLen]byte, valid bool) {
	if c.state != Waiting {
		// Shut down meanwhile: give it back as it came.
		c.actions = append(c.actions, Action{Kind: ReleaseLock, Value: value, Valid: valid})
		return
	}
	rec, err := Decode(value[:])
	ours := valid && err == nil
	clean := ours && rec.Clean
	switch {
	case ours && rec.Next != 0 && rec.Next != c.cfg.Self && c.up[rec.Next]:
		id := moveID{rec.MoveBy, rec.Move, rec.Boot}
		if !c.passed[id] {
			// Not ours: pass it on, and queue behind the target.
			c.passed[id] = true
			c.actions = append(c.actions, Action{Kind: ReleaseLock, Value: value, Valid: true})
			c.do(RequestLock)
			return
		}
	case ours && rec.Next == c.cfg.Self:
	case c.cfg.Prefer != nil:
		// Nobody (UP) is named: the placement rule says who.
		if p := c.cfg.Prefer(c.up); p != 0 && p != c.cfg.Self && c.up[p] {
			c.moveSeq++
			id := moveID{c.cfg.Self, c.moveSeq, c.cfg.Nonce}
			c.passed[id] = true
			c.release(Record{Clean: clean, Holder: c.cfg.Self, Next: p, MoveBy: id.by, Move: id.seq, Boot: id.boot})
			c.do(RequestLock)
			return
		}
	}
	c.set(now, Holding)
	if clean {
		c.startAt = now
	} else {
		c.startAt = now.Add(c.cfg.StopTimeout)
	}
	c.Tick(now)
}

// Lost handles the end of the session holding or waiting for the lock
// without this node releasing it: dlmd fenced the node (ErrLost), or
// stopped.
func (c *Core) Lost(now time.Time) {
	switch c.state {
	case Waiting:
		c.do(RequestLock)
	case Holding:
		// Nothing was started.
		c.set(now, Waiting)
		c.do(RequestLock)
	case Running:
		c.stop(now, forLost)
	case Stopping:
		c.holds = false
		if k := now.Add(KillAfter(c.cfg.StopTimeout)); !c.killed && k.Before(c.killAt) {
			c.killAt = k
		}
		if c.stopWhy == forMove {
			c.stopWhy = forLost
		}
		c.Tick(now)
	}
}

// stop starts stopping the services of a Running node.
func (c *Core) stop(now time.Time, w why) {
	c.set(now, Stopping)
	c.stopWhy, c.killed = w, false
	c.holds = w != forLost
	if w == forLost {
		c.killAt = now.Add(KillAfter(c.cfg.StopTimeout))
	} else {
		// Nobody starts them before this node unlocks.
		c.killAt = now.Add(c.cfg.StopTimeout)
	}
	c.do(StopUnits)
}

// Move hands the role over to target: the services are stopped, then the
// lock is released with a clean Record naming target.
func (c *Core) Move(now time.Time, target uint32) error {
	switch {
	case c.state == Stopping:
		return ErrBusy
	case c.state != Running:
		return ErrNotInit
	case target == c.cfg.Self:
		return nil
	case !c.up[target]:
		return fmt.Errorf("election: node %d: %w", target, ErrNotUp)
	}
	c.moveSeq++
	c.moveTo, c.moveByMe = target, moveID{c.cfg.Self, c.moveSeq, c.cfg.Nonce}
	c.stop(now, forMove)
	return nil
}

// Shutdown stops the services if this node runs them and releases the
// lock cleanly, so the next init starts at once.
func (c *Core) Shutdown(now time.Time) {
	switch c.state {
	case Running:
		c.stop(now, forShutdown)
	case Stopping, Booting:
		// Whatever the stop began for (a move, a lost lock, a boot),
		// the node is done once the services are down: it must never
		// queue again, or it could be granted the role and start the
		// services while the shell drops the lock on its way out.
		c.stopWhy = forShutdown
	case Holding:
		// Holding is a grant that was not a clean hand-over (a clean
		// one starts at once): nothing ran here, but the previous
		// init's copy may still be stopping, so the next holder must
		// wait as this one did.
		c.set(now, Done)
		c.actions = append(c.actions, Action{Kind: ReleaseLock, Valid: false})
	default:
		c.set(now, Done)
	}
}

// release unlocks writing r.
func (c *Core) release(r Record) {
	c.actions = append(c.actions, Action{Kind: ReleaseLock, Value: r.Encode(), Valid: true})
}

// UnitsStopped handles the shell's report that none of the services runs
// any more (after StopUnits or KillUnits).
func (c *Core) UnitsStopped(now time.Time) {
	switch c.state {
	case Booting:
		if c.stopWhy == forShutdown {
			c.set(now, Done)
			return
		}
		c.set(now, Waiting)
		c.do(RequestLock)
	case Stopping:
		switch {
		case !c.holds && c.stopWhy == forShutdown:
			c.set(now, Done)
		case !c.holds:
			c.set(now, Waiting)
			c.do(RequestLock)
		case c.stopWhy == forMove:
			c.release(Record{Clean: true, Holder: c.cfg.Self, Next: c.moveTo, MoveBy: c.moveByMe.by, Move: c.moveByMe.seq, Boot: c.moveByMe.boot})
			c.set(now, Waiting)
			c.do(RequestLock)
		default: // shutdown
			c.release(Record{Clean: true, Holder: c.cfg.Self})
			c.set(now, Done)
		}
	}
}

// Tick handles the passing of time: a holder's start, a stopping node's
// kill.
func (c *Core) Tick(now time.Time) {
	switch {
	case c.state == Holding && !now.Before(c.startAt):
		c.set(now, Running)
		c.do(StartUnits)
	case (c.state == Stopping || c.state == Booting) && !c.killed && !now.Before(c.killAt):
		c.killed = true
		c.do(KillUnits)
	}
}
