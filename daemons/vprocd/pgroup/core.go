package pgroup

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"syscall"
	"time"

	"github.com/openssi/openssi/daemons/vprocd/access"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

// DefaultForwarded are the signals a waiting `ssi exec` forwards to its
// remote process.
var DefaultForwarded = []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM}

// DefaultWait is how long a surrogate holds a lookup for the survivors'
// reports by default.
const DefaultWait = 2 * time.Second

// Config is what a Core needs.
type Config struct {
	// Self is this node's number (1..cpid.MaxNode).
	Self uint32
	// Forwarded are the signals a waiting `ssi exec` forwards to its
	// remote process (default DefaultForwarded): a group kill leaves those
	// to it rather than deliver them twice.
	Forwarded []syscall.Signal
	// Wait bounds how long a surrogate holds a lookup or kill for the
	// reports of survivors that have not reported (a node UP whose vprocd
	// is not running); then it answers from what it has. Default
	// DefaultWait.
	Wait time.Duration
}

// heldSet is what one holder reported of a DOWN origin.
type heldSet struct {
	epoch uint64
	procs []Proc
}

// waiting is a lookup or kill held for reports.
type waiting struct {
	since time.Time
	ev    Event
}

// Core is one vprocd's bookkeeping of cluster processes. Not safe for
// concurrent use.
type Core struct {
	self      uint32
	forwarded map[syscall.Signal]bool
	wait      time.Duration
	now       time.Time
	epoch     uint64
	up        map[uint32]bool
	// upEpoch and downEpoch are the epochs each node was last seen UP
	// and DOWN at.
	upEpoch   map[uint32]uint64
	downEpoch map[uint32]uint64
	// origin holds the processes whose origin is this node, wherever
	// they run.
	origin map[cpid.CPID]Proc
	// local holds the processes started through vprocd that run here.
	local map[cpid.CPID]Proc
	// held holds, per DOWN origin and per holder, the processes the
	// holder reported: this node answers for them while it is the
	// origin's surrogate.
	held map[uint32]map[uint32]heldSet
	// awaited are, per DOWN origin this node is the surrogate of, the
	// survivors that have not reported to it yet; lookups of that origin
	// wait in pending until none is left (or Wait passed).
	awaited map[uint32]map[uint32]bool
	pending map[uint32][]waiting
	// reported is, per DOWN origin, the node this node last reported its
	// processes of that origin to.
	reported map[uint32]uint32
	rd       Ready
}

// New returns a Core with no member UP; Start gives it its first view.
func New(cfg Config) *Core {
	c := &Core{self: cfg.Self, forwarded: map[syscall.Signal]bool{}, wait: cfg.Wait,
		up: map[uint32]bool{}, upEpoch: map[uint32]uint64{}, downEpoch: map[uint32]uint64{},
		origin: map[cpid.CPID]Proc{}, local: map[cpid.CPID]Proc{}, held: map[uint32]map[uint32]heldSet{},
		awaited: map[uint32]map[uint32]bool{}, pending: map[uint32][]waiting{}, reported: map[uint32]uint32{}}
	if c.wait <= 0 {
		c.wait = DefaultWait
	}
	fw := cfg.Forwarded
	if fw == nil {
		fw = DefaultForwarded
	}
	for _, s := range fw {
		c.forwarded[s] = true
	}
	return c
}

// Start installs the membership the daemon starts from: the nodes UP at
// epoch (this node among them).
func (c *Core) Start(epoch uint64, up []uint32) {
	c.epoch = epoch
	for _, n := range up {
		c.up[n] = true
		c.upEpoch[n] = epoch
	}
}

// Ready returns what the events since the last Ready asked for, and
// forgets it.
func (c *Core) Ready() Ready {
	rd := c.rd
	c.rd = Ready{}
	return rd
}

// HasReady reports whether Ready has something.
func (c *Core) HasReady() bool {
	return len(c.rd.Sends)+len(c.rd.Signals)+len(c.rd.Exits)+len(c.rd.Answers) > 0
}

// Surrogate is the node that answers for origin while it is DOWN: of the
// UP nodes but origin, the one with the highest FNV-1a hash of (origin,
// node), the lower number on a tie (rendezvous hashing: every node
// computes the same from the same view, the surrogates of several DOWN
// origins spread over the survivors, and when a surrogate goes DOWN only
// its origins move). ok is false when no other node is UP.
func Surrogate(origin uint32, up []uint32) (node uint32, ok bool) {
	var best uint64
	for _, n := range up {
		if n == origin {
			continue
		}
		h := fnv.New64a()
		h.Write([]byte{byte(origin >> 24), byte(origin >> 16), byte(origin >> 8), byte(origin), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		if w := h.Sum64(); !ok || w > best || (w == best && n < node) {
			best, node, ok = w, n, true
		}
	}
	return node, ok
}

// Up is the UP nodes of the current view, sorted.
func (c *Core) Up() []uint32 { return slices.Sorted(maps.Keys(c.up)) }

// Route is the node to ask about x: its origin while UP (or this node's
// own), else the origin's surrogate.
func (c *Core) Route(x cpid.CPID) (uint32, error) {
	if !x.Valid() {
		return 0, fmt.Errorf("pgroup: cpid %d: %w", int32(x), ErrInvalid)
	}
	if o := x.Node(); c.up[o] || o == c.self {
		return o, nil
	}
	s, ok := Surrogate(x.Node(), c.Up())
	if !ok {
		return 0, fmt.Errorf("pgroup: cpid %s: %w", x, ErrNoNode)
	}
	return s, nil
}

// Step applies one event at now. An error is a synchronous refusal
// (nothing changed): an invalid event (ErrInvalid: log it, a peer's
// Report that cannot be right), a Started whose cpid is in use (ErrInUse:
// choose another), or a Started on a node that is not UP (ErrDown: the
// exec ends with 255, its node went down before the start was confirmed).
func (c *Core) Step(now time.Time, ev Event) error {
	c.now = now
	switch e := ev.(type) {
	case Started:
		return c.started(e.Proc)
	case Ended:
		c.ended(e)
	case Moved:
		return c.moved(e.Proc)
	case NodeDown:
		c.nodeDown(e)
	case NodeUp:
		c.nodeUp(e)
	case Report:
		return c.report(e)
	case Lookup:
		c.lookup(e)
	case Kill:
		c.kill(e)
	default:
		return fmt.Errorf("pgroup: event %T: %w", ev, ErrInvalid)
	}
	return nil
}

// Tick answers the lookups and kills a surrogate has held for Wait: from
// what it has heard, the silent survivors counted as holding nothing.
func (c *Core) Tick(now time.Time) {
	c.now = now
	for _, o := range slices.Sorted(maps.Keys(c.pending)) {
		if ws := c.pending[o]; len(ws) > 0 && now.Sub(ws[0].since) >= c.wait {
			delete(c.awaited, o)
		}
	}
	c.retryPending()
}

// NextDeadline is when Tick has something to do; zero when nothing waits.
func (c *Core) NextDeadline() time.Time {
	var d time.Time
	for _, ws := range c.pending {
		if len(ws) > 0 && (d.IsZero() || ws[0].since.Add(c.wait).Before(d)) {
			d = ws[0].since.Add(c.wait)
		}
	}
	return d
}

func valid(p Proc) error {
	if !p.CPID.Valid() || p.Node == 0 || p.Node > cpid.MaxNode || p.PID < 1 || p.PID > cpid.MaxPID ||
		(p.PGID != 0 && !p.PGID.Valid()) || (p.SID != 0 && !p.SID.Valid()) {
		return fmt.Errorf("pgroup: process %v: %w", p, ErrInvalid)
	}
	return nil
}

func (c *Core) started(p Proc) error {
	if err := valid(p); err != nil {
		return err
	}
	mine, here := p.CPID.Node() == c.self, p.Node == c.self
	if !mine && !here {
		return fmt.Errorf("pgroup: process %v neither started from nor runs on node %d: %w", p, c.self, ErrInvalid)
	}
	if old, ok := c.origin[p.CPID]; mine && ok {
		return fmt.Errorf("pgroup: cpid %s is in use by pid %d on node %d: %w", p.CPID, old.PID, old.Node, ErrInUse)
	}
	if old, ok := c.local[p.CPID]; here && ok {
		return fmt.Errorf("pgroup: cpid %s is in use by pid %d here: %w", p.CPID, old.PID, ErrInUse)
	}
	if !c.up[p.Node] && !here {
		return fmt.Errorf("pgroup: process %s started on node %d, which is not UP: %w", p.CPID, p.Node, ErrDown)
	}
	if p.PGID == 0 {
		p.PGID = p.CPID
	}
	if p.SID == 0 {
		p.SID = p.PGID
	}
	if mine {
		c.origin[p.CPID] = p
	}
	if here {
		if o := p.CPID.Node(); !c.up[o] && o != c.self {
			p.TTY, p.Detached = false, true
			c.local[p.CPID] = p
			c.sendReport(o, true)
		} else {
			c.local[p.CPID] = p
		}
	}
	return nil
}

func (c *Core) moved(p Proc) error {
	if !p.CPID.Valid() || p.Node == 0 || p.Node > cpid.MaxNode || p.PID < 0 || p.PID > cpid.MaxPID {
		return fmt.Errorf("pgroup: moved process %v: %w", p, ErrInvalid)
	}
	if old, ok := c.origin[p.CPID]; ok && p.CPID.Node() == c.self {
		// Its pid there, or 0 until it is known (never the old one:
		// see ended).
		old.Node, old.PID = p.Node, p.PID
		c.origin[p.CPID] = old
	}
	if p.Node != c.self {
		return nil
	}
	if p.PID == 0 {
		return fmt.Errorf("pgroup: moved process %v here without its pid: %w", p, ErrInvalid)
	}
	if p.PGID == 0 {
		p.PGID = p.CPID
	}
	if p.SID == 0 {
		p.SID = p.PGID
	}
	c.local[p.CPID] = p
	if _, ok := c.origin[p.CPID]; !ok && p.CPID.Node() == c.self {
		c.origin[p.CPID] = p
	}
	if o := p.CPID.Node(); o != c.self && !c.up[o] {
		c.sendReport(o, true)
	}
	return nil
}

func (c *Core) ended(e Ended) {
	if p, ok := c.origin[e.CPID]; ok && p.Node == e.Node && (e.PID == 0 || p.PID == 0 || p.PID == e.PID) {
		delete(c.origin, e.CPID)
	}
	if e.Node != c.self {
		return
	}
	l, ok := c.local[e.CPID]
	if !ok {
		return
	}
	delete(c.local, e.CPID)
	switch o := e.CPID.Node(); {
	case o == c.self:
	case c.up[o]:
		c.rd.Sends = append(c.rd.Sends, Send{To: o, Ended: &Ended{CPID: e.CPID, Node: c.self, PID: l.PID}})
	default:
		c.sendReport(o, true)
	}
}

// localOf is this node's processes of origin o, by cpid.
func (c *Core) localOf(o uint32) []Proc {
	var out []Proc
	for _, p := range c.local {
		if p.CPID.Node() == o {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b Proc) int { return cmp.Compare(a.CPID, b.CPID) })
	return out
}

// sendReport reports this node's processes of the DOWN origin o (maybe
// none) to its surrogate: when always, or when the surrogate is not the
// one last reported to.
func (c *Core) sendReport(o uint32, always bool) {
	s, ok := Surrogate(o, c.Up())
	if !ok {
		delete(c.reported, o)
		return
	}
	if last, sent := c.reported[o]; sent && last == s && !always {
		return
	}
	c.reported[o] = s
	r := Report{From: c.self, Origin: o, Epoch: c.epoch, Procs: c.localOf(o)}
	if s == c.self {
		c.hold(r)
		return
	}
	c.rd.Sends = append(c.rd.Sends, Send{To: s, Report: &r})
}

func (c *Core) nodeDown(e NodeDown) {
	if e.Node == c.self || e.Node == 0 || e.Node > cpid.MaxNode {
		return
	}
	c.epoch = max(c.epoch, e.Epoch)
	delete(c.up, e.Node)
	c.downEpoch[e.Node] = e.Epoch
	// The processes that ran on it are lost: a waiting exec ends.
	for _, x := range slices.Sorted(maps.Keys(c.origin)) {
		p := c.origin[x]
		if p.Node != e.Node {
			continue
		}
		delete(c.origin, x)
		if !p.Detached {
			c.rd.Exits = append(c.rd.Exits, Exit{CPID: x, Status: 255,
				Reason: fmt.Sprintf("node %d went down while running cpid %s (pid %d there)", e.Node, x, p.PID)})
		}
	}
	for o, byHolder := range c.held {
		delete(byHolder, e.Node)
		if len(byHolder) == 0 {
			delete(c.held, o)
		}
	}
	for _, aw := range c.awaited {
		delete(aw, e.Node)
	}
	// Its processes here lose their origin: a hangup for those attached
	// to a terminal there, as nohup decides; no exec waits for any now.
	for _, x := range slices.Sorted(maps.Keys(c.local)) {
		p := c.local[x]
		if p.CPID.Node() != e.Node {
			continue
		}
		if p.TTY {
			c.rd.Signals = append(c.rd.Signals, Signal{Node: c.self, PID: p.PID, Group: true, CPID: x, Signal: syscall.SIGHUP})
		}
		p.TTY, p.Detached = false, true
		c.local[x] = p
	}
	c.membershipChanged()
}

func (c *Core) nodeUp(e NodeUp) {
	if e.Node == c.self || e.Node == 0 || e.Node > cpid.MaxNode {
		return
	}
	c.epoch = max(c.epoch, e.Epoch)
	c.up[e.Node] = true
	c.upEpoch[e.Node] = e.Epoch
	// A new vprocd of an origin takes its processes back.
	delete(c.held, e.Node)
	delete(c.awaited, e.Node)
	delete(c.reported, e.Node)
	if ps := c.localOf(e.Node); len(ps) > 0 {
		c.rd.Sends = append(c.rd.Sends, Send{To: e.Node, Report: &Report{From: c.self, Origin: e.Node, Epoch: c.epoch, Procs: ps}})
	}
	c.membershipChanged()
}

// membershipChanged reports to the surrogates that changed, takes up the
// surrogacies this node gained, and moves the held lookups on.
func (c *Core) membershipChanged() {
	for o, byHolder := range c.held {
		if !c.up[o] {
			continue
		}
		for h, set := range byHolder {
			if set.epoch <= c.epoch { // the view caught up: the origin is UP
				delete(byHolder, h)
			}
		}
		if len(byHolder) == 0 {
			delete(c.held, o)
		}
	}
	for _, o := range c.downOrigins() {
		c.sendReport(o, false)
		_, was := c.awaited[o]
		if s, _ := Surrogate(o, c.Up()); s != c.self {
			if was { // no longer its surrogate: the new one is sent all
				delete(c.awaited, o)
				delete(c.held, o)
			}
			continue
		}
		if was {
			continue
		}
		// Newly its surrogate: wait for every survivor that was UP
		// when o went down (only those can hold its processes) and has
		// not reported here yet.
		aw := map[uint32]bool{}
		for n := range c.up {
			if _, heard := c.held[o][n]; n != c.self && c.upEpoch[n] < c.downEpoch[o] && !heard {
				aw[n] = true
			}
		}
		c.awaited[o] = aw
	}
	c.retryPending()
}

// downOrigins are the nodes this node has seen UP and that are DOWN now.
func (c *Core) downOrigins() []uint32 {
	var out []uint32
	for n := range c.downEpoch {
		if !c.up[n] && n != c.self {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func (c *Core) report(r Report) error {
	if r.From == 0 || r.From == c.self || r.From > cpid.MaxNode || r.Origin == 0 || r.Origin > cpid.MaxNode {
		return fmt.Errorf("pgroup: report of origin %d from node %d: %w", r.Origin, r.From, ErrInvalid)
	}
	for _, p := range r.Procs {
		if err := valid(p); err != nil || p.CPID.Node() != r.Origin || p.Node != r.From {
			return fmt.Errorf("pgroup: report of origin %d from node %d holds %v: %w", r.Origin, r.From, p, ErrInvalid)
		}
	}
	if d, dead := c.downEpoch[r.From]; dead && !c.up[r.From] && d >= r.Epoch {
		return nil // its processes died with it
	}
	if r.Origin == c.self {
		if !c.up[r.From] {
			return nil
		}
		// Handed back after this vprocd came up again.
		for _, p := range r.Procs {
			if _, ok := c.origin[p.CPID]; !ok {
				p.TTY, p.Detached = false, true
				c.origin[p.CPID] = p
			}
		}
		return nil
	}
	if r.Epoch < c.upEpoch[r.Origin] || (c.up[r.Origin] && r.Epoch <= c.epoch) {
		return nil // the origin is UP (again): the holder hands back to it
	}
	// Held even while the origin is UP here, when the holder's view is
	// ahead of this node's: it saw the origin go DOWN first.
	c.hold(r)
	c.retryPending()
	return nil
}

// hold keeps what a holder reported of a DOWN origin.
func (c *Core) hold(r Report) {
	if c.held[r.Origin] == nil {
		c.held[r.Origin] = map[uint32]heldSet{}
	}
	if old, ok := c.held[r.Origin][r.From]; ok && old.epoch > r.Epoch {
		return
	}
	c.held[r.Origin][r.From] = heldSet{epoch: r.Epoch, procs: slices.Clone(r.Procs)}
	if aw := c.awaited[r.Origin]; aw != nil && r.Epoch >= c.downEpoch[r.Origin] {
		delete(aw, r.From)
	}
}

// find resolves x: the answer to give now, or wait when this node is the
// surrogate of x's origin and a survivor has not reported yet.
func (c *Core) find(id uint64, x cpid.CPID) (a Answer, wait bool) {
	a.ID = id
	to, err := c.Route(x)
	o := x.Node()
	switch {
	case err != nil:
		a.Err = err
		return a, false
	case o == c.self:
		if p, ok := c.origin[x]; ok {
			a.Proc, a.Found = p, true
		} else {
			a.Local = true
		}
		return a, false
	case to != c.self:
		a.Redirect = to
		return a, false
	case len(c.awaited[o]) > 0:
		return a, true
	}
	for _, h := range slices.Sorted(maps.Keys(c.held[o])) {
		for _, p := range c.held[o][h].procs {
			if p.CPID == x {
				a.Proc, a.Found = p, true
				return a, false
			}
		}
	}
	a.Err = fmt.Errorf("pgroup: cpid %s (origin node %d is down): %w", x, o, ErrUnknown)
	return a, false
}

func (c *Core) holdRequest(o uint32, ev Event) {
	c.pending[o] = append(c.pending[o], waiting{since: c.now, ev: ev})
}

func (c *Core) lookup(e Lookup) {
	a, wait := c.find(e.ID, e.CPID)
	if wait {
		c.holdRequest(e.CPID.Node(), e)
		return
	}
	c.rd.Answers = append(c.rd.Answers, a)
}

func (c *Core) kill(e Kill) {
	if e.Target.Group {
		c.killGroup(e)
		return
	}
	a, wait := c.find(e.ID, e.Target.ID)
	if wait {
		c.holdRequest(e.Target.ID.Node(), e)
		return
	}
	switch {
	case a.Found:
		if err := access.Signal(e.Caller, a.Proc.UID, a.Proc.CPID); err != nil {
			a.Err = fmt.Errorf("pgroup: %w", err)
			a.Denied = 1
			break
		}
		c.rd.Signals = append(c.rd.Signals, Signal{Node: a.Proc.Node, PID: a.Proc.PID, CPID: a.Proc.CPID, Signal: e.Signal, Caller: e.Caller})
		a.Signaled = 1
	case a.Local:
		c.rd.Signals = append(c.rd.Signals, Signal{Node: c.self, PID: e.Target.ID.PID(), CPID: e.Target.ID, Signal: e.Signal, Caller: e.Caller})
	}
	c.rd.Answers = append(c.rd.Answers, a)
}

// killGroup signals the members of the group that run here. A member with
// a waiting `ssi exec` in the group on its UP origin gets a forwarded
// signal from that exec: the signals it forwards are left to it. On the
// group's origin the local process group is signaled too (the shell
// applies it to each member it may signal).
func (c *Core) killGroup(e Kill) {
	a := Answer{ID: e.ID}
	g := e.Target.ID
	if !g.Valid() {
		a.Err = fmt.Errorf("pgroup: process group %d: %w", int32(g), ErrInvalid)
		c.rd.Answers = append(c.rd.Answers, a)
		return
	}
	if g.Node() == c.self {
		c.rd.Signals = append(c.rd.Signals, Signal{Node: c.self, PID: g.PID(), Group: true, CPID: g, Signal: e.Signal, Caller: e.Caller})
	}
	for _, x := range slices.Sorted(maps.Keys(c.local)) {
		p := c.local[x]
		if p.PGID != g {
			continue
		}
		if err := access.Signal(e.Caller, p.UID, x); err != nil {
			a.Denied++
			continue
		}
		a.Signaled++
		if o := x.Node(); c.forwarded[e.Signal] && !p.Detached && (c.up[o] || o == c.self) && g.Node() == o {
			continue // its exec, in the group on the origin, forwards it
		}
		c.rd.Signals = append(c.rd.Signals, Signal{Node: c.self, PID: p.PID, Group: true, CPID: x, Signal: e.Signal, Caller: e.Caller})
	}
	c.rd.Answers = append(c.rd.Answers, a)
}

// GroupResult is the outcome of a group kill sent to every UP node, from
// the answers' counts summed (with what the shell's own group signal on
// the origin found): nil when some member was signaled, else why not.
func GroupResult(g cpid.CPID, caller uint32, signaled, denied int) error {
	switch {
	case signaled > 0:
		return nil
	case denied > 0:
		return fmt.Errorf("pgroup: uid %d may not signal any process of group %s (only their owner or root may): %w", caller, g, access.ErrPermission)
	default:
		return fmt.Errorf("pgroup: no process in group %s: %w", g, ErrUnknown)
	}
}

// retryPending answers the held lookups and kills that can be answered.
func (c *Core) retryPending() {
	for _, o := range slices.Sorted(maps.Keys(c.pending)) {
		if s, _ := Surrogate(o, c.Up()); len(c.awaited[o]) > 0 && !c.up[o] && s == c.self {
			continue
		}
		ws := c.pending[o]
		delete(c.pending, o)
		now := c.now
		for _, w := range ws {
			c.now = w.since // one held again keeps its first time
			switch e := w.ev.(type) {
			case Lookup:
				c.lookup(e)
			case Kill:
				c.kill(e)
			}
		}
		c.now = now
	}
}
