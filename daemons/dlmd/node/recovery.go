package node

import (
	"bytes"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/dlmd/directory"
	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// recovery is the state of the recovery in progress (see package
// directory for the protocol).
type recovery struct {
	id      directory.ID
	barrier *directory.Barrier
	plan    *directory.Plan
	started time.Time
	copies  map[string]*gained // by lockspace
	// dir is this node's part of the new directory.
	dir *directory.Table
	// lastPong is, per lost node, the latest time a member can have
	// answered its ping (from their markers).
	lastPong map[uint32]time.Time
	// lostLease is, per lost node, the longest lease the members heard
	// it set or use.
	lostLease map[uint32]time.Duration
	// waiting: the rebuild waits for the lost nodes' leases to end, until
	// wake.
	waiting bool
	wake    time.Time
	// era is the token era this node reports in the recovery's markers:
	// its highest planned era when the recovery started, the same in
	// every marker it sends for it, so that all members plan alike.
	era uint64
}

func newRecovery(id directory.ID, members []uint32, now time.Time, era uint64) *recovery {
	return &recovery{id: id, barrier: directory.NewBarrier(id, members), started: now,
		copies: map[string]*gained{}, dir: directory.NewTable(), lastPong: map[uint32]time.Time{},
		lostLease: map[uint32]time.Duration{}, era: era}
}

// gained collects the copies of a lockspace's resources this node will
// master.
type gained struct {
	cfg   lockspace.Config
	locks map[string][]lockspace.LockInfo
	pids  map[lockspace.Owner]int32
}

// Membership applies a membership event (from clmsd): node is UP or not
// from epoch on.
func (n *Node) Membership(now time.Time, epoch uint64, node uint32, up bool) {
	n.now = now
	if n.members.Apply(epoch, node, up) {
		n.startRecovery(directory.ID{Epoch: epoch})
	}
}

// Start installs the view the daemon starts from (the nodes UP at epoch)
// and runs the first recovery.
func (n *Node) Start(now time.Time, epoch uint64, up []uint32) {
	n.now = now
	n.members = directory.Members{Epoch: epoch, Up: map[uint32]bool{}}
	for _, m := range up {
		n.members.Up[m] = true
	}
	n.startRecovery(directory.ID{Epoch: epoch})
}

// memberList is the members a recovery waits for: the nodes UP but those
// whose dlmd said goodbye.
func (n *Node) memberList() []uint32 {
	members := n.members.List()
	if len(n.gone) == 0 {
		return members
	}
	return slices.DeleteFunc(members, func(m uint32) bool { _, gone := n.gone[m]; return gone })
}

func (n *Node) selfReport() directory.Report {
	return directory.Report{Node: n.self, Incarnation: n.cfg.Incarnation, Last: n.last.ID, HasLast: n.haveLast, Era: n.reportedEra(n.rec.id)}
}

func (n *Node) marker(id directory.ID) *dlmpeerv1.Marker {
	return &dlmpeerv1.Marker{Epoch: id.Epoch, Round: id.Round, Node: n.self, Incarnation: n.cfg.Incarnation,
		LastEpoch: n.last.ID.Epoch, LastRound: n.last.ID.Round, HasLast: n.haveLast, PongAges: n.pongAges(),
		TokenEra: n.reportedEra(id)}
}

// reportedEra is the token era this node reports for recovery id.
func (n *Node) reportedEra(id directory.ID) uint64 {
	if n.rec != nil && n.rec.id == id {
		return n.rec.era
	}
	return n.planned
}

// startRecovery stops granting and starts the barrier of recovery id.
func (n *Node) startRecovery(id directory.ID) {
	up := n.members.List()
	n.setPongable(up)
	members := n.memberList()
	if !slices.Contains(members, n.self) {
		if n.haveLast {
			n.fence("this node is not UP in the membership")
			return
		}
		n.log.WithField("members", members).Warn("this node is not UP in the membership: not granting")
		n.rec = newRecovery(id, members, n.now, n.planned)
		return
	}
	if n.rec != nil {
		// A newer recovery replaces the one in progress: requests it
		// put aside stay in the outbox.
		n.log.WithFields(logrus.Fields{"old": n.rec.id.String(), "new": id.String()}).Info("recovery restarted")
	}
	n.rec = newRecovery(id, members, n.now, n.planned)
	n.log.WithFields(logrus.Fields{"recovery": id.String(), "members": members}).Info("recovery: stopped granting")
	// The links of the nodes that are no longer UP close (those of a node
	// that said goodbye stay until its new dlmd replaces them).
	for _, m := range sortedNodes(n.outs) {
		if !slices.Contains(up, m) {
			n.closeOut(m)
		}
	}
	for _, m := range sortedNodes(n.ins) {
		if !slices.Contains(up, m) {
			n.closeIn(m)
		}
	}
	for _, m := range members {
		if m != n.self {
			n.toMaster(m, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: n.marker(id)}})
		}
	}
	// Markers that arrived before we got here.
	early := n.early
	n.early = nil
	for _, e := range early {
		if !n.members.Up[e.from] {
			// Still not UP: kept only for a later epoch.
			n.fromNonMember(e.from, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: e.m}})
			continue
		}
		n.onMarker(e.from, e.m)
	}
	if n.rec.barrier.Ack(n.selfReport()) {
		n.copyPhase()
	}
}

// onMarker handles a peer's "stopped at id": acknowledge once we are in
// the same recovery.
func (n *Node) onMarker(from uint32, m *dlmpeerv1.Marker) {
	id := directory.ID{Epoch: m.GetEpoch(), Round: m.GetRound()}
	cur := n.last.ID
	if n.rec != nil {
		cur = n.rec.id
	}
	switch {
	case n.rec != nil && id == n.rec.id:
		n.notePongAges(m.GetPongAges())
		n.toRequester(from, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_MarkerAck{MarkerAck: n.marker(id)}})
	case cur.Less(id) || !n.haveLast && n.rec == nil:
		if id.Epoch == n.members.Epoch && n.members.Epoch != 0 {
			n.startRecovery(id) // a higher round at our epoch: join it
			if n.rec != nil && n.rec.id == id {
				n.toRequester(from, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_MarkerAck{MarkerAck: n.marker(id)}})
			}
			return
		}
		// Kept until this node gets there; only the latest of a node
		// (its recoveries only go up on a link), so that a peer cannot
		// grow the list without end.
		n.dropEarly(from)
		n.early = append(n.early, earlyMarker{from: from, m: m})
	default:
		// An older recovery. From a dlmd we do not know in our directory
		// (it restarted, or came up after): run the recovery again at
		// our epoch so that it joins.
		if n.rec == nil && n.haveLast && id.Epoch == n.members.Epoch && n.last.Members[from] != m.GetIncarnation() {
			n.log.WithFields(logrus.Fields{"node": from, "recovery": id.String()}).Info("a new dlmd joins: recovering again")
			n.startRecovery(directory.ID{Epoch: n.last.ID.Epoch, Round: n.last.ID.Round + 1})
		}
	}
}

func (n *Node) onMarkerAck(from uint32, m *dlmpeerv1.Marker) {
	id := directory.ID{Epoch: m.GetEpoch(), Round: m.GetRound()}
	if n.rec == nil || id != n.rec.id || n.rec.plan != nil {
		return
	}
	n.notePongAges(m.GetPongAges())
	r := directory.Report{Node: from, Incarnation: m.GetIncarnation(),
		Last: directory.ID{Epoch: m.GetLastEpoch(), Round: m.GetLastRound()}, HasLast: m.GetHasLast(), Era: m.GetTokenEra()}
	if n.rec.barrier.Ack(r) {
		n.copyPhase()
	}
}

// copyPhase runs once every member has stopped: our copies are exact; send
// those of moving resources to their new masters.
func (n *Node) copyPhase() {
	rec := n.rec
	plan := directory.MakePlan(rec.id, rec.barrier.Reports()).WithOld(n.last, n.haveLast)
	rec.plan = &plan
	n.planned = max(n.planned, plan.Era)
	// Requests to masters that are gone will not be answered: send them
	// again after the recovery, but for those that gave a mode up (see
	// settle).
	var lost []*pending
	for _, p := range n.pend {
		if !slices.Contains(plan.New, p.master) || slices.Contains(plan.Lost, p.master) {
			lost = append(lost, p)
			n.dropPending(p)
		}
	}
	slices.SortFunc(lost, func(a, b *pending) int { return int(a.tag) - int(b.tag) })
	lost = slices.DeleteFunc(lost, n.settle)
	n.outbox = append(lost, n.outbox...)
	// The directory nodes change: lookups are asked again after the
	// recovery, and so is what waited for the next tick.
	n.dropLookups()
	n.outbox = append(n.outbox, n.retries...)
	n.retries = nil
	slices.SortStableFunc(n.outbox, func(a, b *pending) int { return int(a.tag) - int(b.tag) })

	type dest struct {
		node uint32
		ls   string
	}
	out := map[dest]*dlmpeerv1.Copies{}
	get := func(node uint32, ls string) *dlmpeerv1.Copies {
		d := dest{node, ls}
		c := out[d]
		if c == nil {
			cfg, ok := n.lsCfg[ls]
			if !ok {
				n.log.WithField("lockspace", ls).Error("recovery: no configuration for lockspace")
			}
			c = &dlmpeerv1.Copies{Epoch: rec.id.Epoch, Round: rec.id.Round, Lockspace: ls, Config: cfgToProto(cfg)}
			out[d] = c
		}
		return c
	}
	// The new directory: every resource that keeps its master is
	// registered by that master, every moving one (with locks) by the
	// holders of its locks, under the new master.
	type entry struct {
		k      directory.Key
		master uint32
	}
	registered := map[entry]bool{}
	register := func(k directory.Key, master uint32) {
		e := entry{k, master}
		if registered[e] {
			return
		}
		registered[e] = true
		c := get(directory.Master(plan.New, k.Lockspace, k.Resource), k.Lockspace)
		c.Dir = append(c.Dir, &dlmpeerv1.DirEntry{Resource: []byte(k.Resource), Master: master})
	}
	for _, cl := range n.locks {
		if cl.state == 0 || !plan.Moves(cl.master) {
			continue
		}
		to := plan.NewMaster(cl.ls, cl.res)
		c := get(to, cl.ls)
		c.Locks = append(c.Locks, cl.toProto())
		register(directory.Key{Lockspace: cl.ls, Resource: cl.res}, to)
	}
	if !plan.Moves(n.self) {
		for k := range n.mastered {
			register(k, n.self)
		}
	}
	keys := make([]dest, 0, len(out))
	for d := range out {
		keys = append(keys, d)
	}
	slices.SortFunc(keys, func(a, b dest) int {
		if a.node != b.node {
			return int(a.node) - int(b.node)
		}
		if a.ls < b.ls {
			return -1
		}
		return 1
	})
	for _, d := range keys {
		c := out[d]
		slices.SortFunc(c.Locks, func(a, b *dlmpeerv1.CopyLock) int { return int(a.Seq) - int(b.Seq) })
		slices.SortFunc(c.Dir, func(a, b *dlmpeerv1.DirEntry) int { return bytes.Compare(a.Resource, b.Resource) })
		if d.node == n.self {
			n.onCopies(n.self, c)
		} else {
			n.toMaster(d.node, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Copies{Copies: c}})
		}
	}
	done := &dlmpeerv1.CopiesDone{Epoch: rec.id.Epoch, Round: rec.id.Round}
	for _, m := range plan.New {
		if m != n.self {
			n.toMaster(m, &dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_CopiesDone{CopiesDone: done}})
		}
	}
	n.onCopiesDone(n.self, rec.id)
}

// settle completes here an unlock or a conversion down whose master was
// lost before it answered, as if it had: the master may have taken it and
// granted others what the lock gave up, so the copy must not go to the
// new master at its former mode (two incompatible granted copies would
// make the resource fail to rebuild). The client gave the mode up when it
// asked. A value block written on the way is kept by the copy (a down
// conversion) or lost, and marked invalid if no other copy has it. It
// reports whether p was settled.
func (n *Node) settle(p *pending) bool {
	cl := p.lock
	if cl == nil || n.locks[cl.key.ID] != cl || cl.state != lockspace.StateGranted {
		return false
	}
	switch p.req.Op {
	case dlmpeerv1.Op_OP_UNLOCK:
		n.onReply(p, &dlmpeerv1.PeerReply{Tag: p.tag}, nil)
		return true
	case dlmpeerv1.Op_OP_CONVERT:
		m := mode(p.req.Mode)
		if !m.Valid() || !cl.gr.Covers(m) {
			return false // a conversion up holds nothing new yet: asked again
		}
		e := &lockspace.Effect{Kind: lockspace.Granted, Key: cl.key, Resource: cl.res, Mode: m, Seq: cl.seq}
		if m == lockspace.PW || m == lockspace.EX {
			e.Token = cl.token // a conversion down from EX to PW keeps its token
		}
		n.onReply(p, &dlmpeerv1.PeerReply{Tag: p.tag}, e)
		return true
	}
	return false
}

func (cl *copyLock) toProto() *dlmpeerv1.CopyLock {
	c := &dlmpeerv1.CopyLock{Resource: []byte(cl.res), Client: cl.key.Owner.Client, Pid: cl.pid, LockId: uint64(cl.key.ID),
		State: plockState(cl.state), Granted: pmode(cl.gr), Requested: pmode(cl.rq), Flags: uint32(cl.flags),
		Persistent: cl.persistent, Orphan: cl.orphan, Seq: cl.seq, HasLvb: cl.hasLVB, LvbValid: cl.lvbValid}
	if cl.state == lockspace.StateWaiting {
		c.Granted = 0
	}
	if cl.state == lockspace.StateGranted {
		c.Requested = 0
	}
	if !cl.deadline.IsZero() && cl.state != lockspace.StateGranted {
		c.DeadlineUnixNano = cl.deadline.UnixNano()
	}
	if cl.hasLVB {
		c.Lvb = cl.lvb[:]
	}
	if cl.state != lockspace.StateWaiting && (cl.gr == lockspace.PW || cl.gr == lockspace.EX) {
		c.Token = cl.token
	}
	return c
}

// onCopies collects copies for resources this node will master.
func (n *Node) onCopies(from uint32, c *dlmpeerv1.Copies) {
	id := directory.ID{Epoch: c.GetEpoch(), Round: c.GetRound()}
	if n.rec == nil || n.rec.id != id {
		return
	}
	for _, d := range c.GetDir() {
		k := directory.Key{Lockspace: c.GetLockspace(), Resource: string(d.GetResource())}
		if !n.rec.dir.Set(k, d.GetMaster()) {
			n.log.WithFields(logrus.Fields{"lockspace": k.Lockspace, "resource": k.Resource, "from": from, "master": d.GetMaster()}).
				Error("recovery: two masters registered for a resource; keeping the first")
		}
	}
	if len(c.GetLocks()) == 0 {
		return
	}
	g := n.rec.copies[c.GetLockspace()]
	if g == nil {
		g = &gained{cfg: cfgFromProto(c.GetConfig()), locks: map[string][]lockspace.LockInfo{},
			pids: map[lockspace.Owner]int32{}}
		n.rec.copies[c.GetLockspace()] = g
	}
	for _, l := range c.GetLocks() {
		if len(l.GetResource()) == 0 || len(l.GetResource()) > lockspace.MaxResourceName {
			continue
		}
		o := lockspace.Owner{Node: lockspace.NodeID(from), Client: l.GetClient()}
		li := lockspace.LockInfo{Resource: string(l.GetResource()), Key: lockspace.Key{Owner: o, ID: lockspace.LockID(l.GetLockId())},
			State: lockState(l.GetState()), Granted: mode(l.GetGranted()), Requested: mode(l.GetRequested()),
			Flags: lockspace.Flags(l.GetFlags()), Persistent: l.GetPersistent(), Orphan: l.GetOrphan(), Seq: l.GetSeq(),
			HasLVB: l.GetHasLvb(), LVB: lvbOf(l.GetLvb()), LVBValid: l.GetLvbValid(), Token: l.GetToken()}
		if d := l.GetDeadlineUnixNano(); d != 0 {
			li.Deadline = time.Unix(0, d)
		}
		g.locks[li.Resource] = append(g.locks[li.Resource], li)
		g.pids[o] = l.GetPid()
	}
}

func (n *Node) onCopiesDone(from uint32, id directory.ID) {
	if n.rec == nil || n.rec.id != id {
		return
	}
	if n.rec.barrier.CopiesDone(from) && n.rec.plan != nil {
		n.rebuild()
	}
}

// rebuild installs the new directory: drop what moved away and the lost
// nodes' locks, rebuild what moved here, resume.
func (n *Node) rebuild() {
	rec := n.rec
	plan := *rec.plan
	// Grant nothing a lost node held before its lease has surely ended,
	// nor anything at all before this node holds its own lease.
	if wait := n.leaseWait(plan); wait > 0 || !n.leaseHeld() {
		if !rec.waiting {
			n.log.WithFields(logrus.Fields{"recovery": rec.id.String(), "wait": wait.Round(time.Millisecond).String(), "lost": plan.Lost}).
				Info("recovery: waiting for the lost nodes' leases to end and for this node's lease")
		}
		rec.waiting = true
		// Tick tries again: when the leases end, or at the next tick for
		// this node's own.
		rec.wake = n.now.Add(n.cfg.Tick)
		if wait > 0 {
			rec.wake = n.now.Add(wait)
		}
		return
	}
	type lsEffects struct {
		ls   string
		effs []lockspace.Effect
	}
	var all []lsEffects
	now := n.now
	if plan.Moves(n.self) {
		// Full, or this node kept nothing: what it mastered moves.
		n.tables = map[string]*lockspace.Lockspace{}
		n.mastered = map[directory.Key]*mastery{}
	} else {
		for _, name := range sortedKeys(n.tables) {
			t := n.tables[name]
			for _, lost := range plan.Lost {
				all = append(all, lsEffects{name, t.DropNode(lockspace.NodeID(lost))})
			}
			if t.Len() == 0 {
				// The token counters of its resources live on in their
				// masteries, for the table made again on the next request.
				for k, m := range n.mastered {
					if k.Lockspace == name {
						m.floor = max(m.floor, t.Token(k.Resource))
					}
				}
				delete(n.tables, name)
			}
		}
		for o := range n.pids {
			if slices.Contains(plan.Lost, uint32(o.Node)) || !slices.Contains(plan.New, uint32(o.Node)) {
				delete(n.pids, o)
			}
		}
	}
	for _, name := range sortedKeys(rec.copies) {
		g := rec.copies[name]
		t, err := n.table(name, g.cfg)
		if err != nil {
			n.log.WithError(err).WithField("lockspace", name).Error("recovery: cannot create lockspace")
			continue
		}
		for o, pid := range g.pids {
			n.pids[o] = pid
		}
		res := make([]string, 0, len(g.locks))
		for r := range g.locks {
			res = append(res, r)
		}
		slices.Sort(res)
		base := tokenBase(plan.Era)
		for _, r := range res {
			n.becomeMaster(directory.Key{Lockspace: name, Resource: r}, now, base)
			t.RaiseToken(r, base)
			effs, err := t.Rebuild(r, g.locks[r])
			if err != nil {
				n.log.WithError(err).WithFields(logrus.Fields{"lockspace": name, "resource": r}).Error("recovery: rebuild failed")
				continue
			}
			all = append(all, lsEffects{name, effs})
		}
	}
	n.dirTable = rec.dir
	n.routes = map[directory.Key]*route{}
	for _, cl := range n.locks {
		switch {
		case cl.state == 0:
			cl.master = 0 // looked up again when sent
		case plan.Moves(cl.master):
			cl.master = plan.NewMaster(cl.ls, cl.res)
		}
	}
	n.dir = plan.New
	n.era = plan.Era
	n.last = plan.Installed
	n.haveLast = true
	n.rec = nil
	n.log.WithFields(logrus.Fields{"recovery": rec.id.String(), "members": plan.New, "full": plan.Full,
		"lost": plan.Lost, "took": n.now.Sub(rec.started).String()}).Info("recovery done: granting")
	for _, e := range all {
		n.route(e.ls, e.effs)
	}
	if !n.readyDone {
		n.readyDone = true
		n.rd.Installed = true
	}
	// Resume: what waited for the recovery, in order.
	deferred, outbox := n.deferred, n.outbox
	n.deferred, n.outbox = nil, nil
	for _, p := range outbox {
		n.submit(p)
	}
	for _, f := range deferred {
		f()
	}
}
