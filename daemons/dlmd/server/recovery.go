package server

import (
	"slices"
	"strings"
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
	// waiting: the rebuild waits for the lost nodes' leases to end.
	waiting bool
}

func newRecovery(id directory.ID, members []uint32) *recovery {
	return &recovery{id: id, barrier: directory.NewBarrier(id, members), started: time.Now(),
		copies: map[string]*gained{}, dir: directory.NewTable(), lastPong: map[uint32]time.Time{}}
}

// gained collects the copies of a lockspace's resources this node will
// master.
type gained struct {
	cfg   lockspace.Config
	locks map[string][]lockspace.LockInfo
	pids  map[lockspace.Owner]int32
}

// Membership applies a membership event (from clmsd) or, with up unset
// and node 0, the view the daemon starts from.
func (s *Server) Membership(epoch uint64, node uint32, up bool) {
	s.do(func() {
		if s.members.Apply(epoch, node, up) {
			s.startRecovery(directory.ID{Epoch: epoch})
		}
	})
}

// Start installs the view the daemon starts from and runs the first
// recovery.
func (s *Server) Start(epoch uint64, up []uint32) {
	s.do(func() {
		s.members = directory.Members{Epoch: epoch, Up: map[uint32]bool{}}
		for _, n := range up {
			s.members.Up[n] = true
		}
		s.startRecovery(directory.ID{Epoch: epoch})
	})
}

func (s *Server) selfReport() directory.Report {
	return directory.Report{Node: s.self, Incarnation: s.cfg.Incarnation, Last: s.last.ID, HasLast: s.haveLast}
}

func (s *Server) marker(id directory.ID) *dlmpeerv1.Marker {
	return &dlmpeerv1.Marker{Epoch: id.Epoch, Round: id.Round, Node: s.self, Incarnation: s.cfg.Incarnation,
		LastEpoch: s.last.ID.Epoch, LastRound: s.last.ID.Round, HasLast: s.haveLast, PongAges: s.pongAges()}
}

// startRecovery stops granting and starts the barrier of recovery id.
func (s *Server) startRecovery(id directory.ID) {
	members := s.members.List()
	s.setPongable(members)
	if !slices.Contains(members, s.self) {
		if s.haveLast {
			s.fence("this node is not UP in the membership")
			return
		}
		s.log.WithField("members", members).Warn("this node is not UP in the membership: not granting")
		s.rec = newRecovery(id, members)
		return
	}
	if s.rec != nil {
		// A newer recovery replaces the one in progress: requests it
		// put aside stay in the outbox.
		s.log.WithFields(logrus.Fields{"old": s.rec.id.String(), "new": id.String()}).Info("recovery restarted")
	}
	s.rec = newRecovery(id, members)
	s.log.WithFields(logrus.Fields{"recovery": id.String(), "members": members}).Info("recovery: stopped granting")
	for n, po := range s.peersOut {
		if !slices.Contains(members, n) {
			po.close()
			delete(s.peersOut, n)
			s.dropConn(n)
		}
	}
	for n, in := range s.peersIn {
		if !slices.Contains(members, n) {
			in.log.Close()
			delete(s.peersIn, n)
		}
	}
	for _, n := range members {
		if n != s.self {
			s.out(n).log.Push(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Marker{Marker: s.marker(id)}})
		}
	}
	// Markers that arrived before we got here.
	early := s.early
	s.early = nil
	for _, e := range early {
		s.onMarker(e.from, e.in, e.m)
	}
	if s.rec.barrier.Ack(s.selfReport()) {
		s.copyPhase()
	}
}

// onMarker handles a peer's "stopped at id": acknowledge once we are in
// the same recovery.
func (s *Server) onMarker(from uint32, in *inStream, m *dlmpeerv1.Marker) {
	id := directory.ID{Epoch: m.GetEpoch(), Round: m.GetRound()}
	cur := s.last.ID
	if s.rec != nil {
		cur = s.rec.id
	}
	switch {
	case s.rec != nil && id == s.rec.id:
		s.notePongAges(m.GetPongAges())
		in.log.Push(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_MarkerAck{MarkerAck: s.marker(id)}})
	case cur.Less(id) || !s.haveLast && s.rec == nil:
		if id.Epoch == s.members.Epoch && s.members.Epoch != 0 {
			s.startRecovery(id) // a higher round at our epoch: join it
			if s.rec != nil && s.rec.id == id {
				in.log.Push(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_MarkerAck{MarkerAck: s.marker(id)}})
			}
			return
		}
		s.early = append(s.early, earlyMarker{from: from, m: m, in: in})
	default:
		// An older recovery. From a dlmd we do not know in our directory
		// (it restarted, or came up after): run the recovery again at
		// our epoch so that it joins.
		if s.rec == nil && s.haveLast && id.Epoch == s.members.Epoch && s.last.Members[from] != m.GetIncarnation() {
			s.log.WithFields(logrus.Fields{"node": from, "recovery": id.String()}).Info("a new dlmd joins: recovering again")
			s.startRecovery(directory.ID{Epoch: s.last.ID.Epoch, Round: s.last.ID.Round + 1})
		}
	}
}

func (s *Server) onMarkerAck(from uint32, m *dlmpeerv1.Marker) {
	id := directory.ID{Epoch: m.GetEpoch(), Round: m.GetRound()}
	if s.rec == nil || id != s.rec.id || s.rec.plan != nil {
		return
	}
	s.notePongAges(m.GetPongAges())
	r := directory.Report{Node: from, Incarnation: m.GetIncarnation(),
		Last: directory.ID{Epoch: m.GetLastEpoch(), Round: m.GetLastRound()}, HasLast: m.GetHasLast()}
	if s.rec.barrier.Ack(r) {
		s.copyPhase()
	}
}

// copyPhase runs once every member has stopped: our copies are exact; send
// those of moving resources to their new masters.
func (s *Server) copyPhase() {
	rec := s.rec
	plan := directory.MakePlan(rec.id, rec.barrier.Reports()).WithOld(s.last, s.haveLast)
	rec.plan = &plan
	// Requests to masters that are gone will not be answered: send them
	// again after the recovery.
	var lost []*pending
	for _, p := range s.pend {
		if !slices.Contains(plan.New, p.master) || slices.Contains(plan.Lost, p.master) {
			lost = append(lost, p)
			s.dropPending(p)
		}
	}
	slices.SortFunc(lost, func(a, b *pending) int { return int(a.tag) - int(b.tag) })
	s.outbox = append(lost, s.outbox...)
	// The directory nodes change: lookups are asked again after the
	// recovery, and so is what waited for the next tick.
	s.dropLookups()
	s.outbox = append(s.outbox, s.retries...)
	s.retries = nil
	slices.SortStableFunc(s.outbox, func(a, b *pending) int { return int(a.tag) - int(b.tag) })

	type dest struct {
		node uint32
		ls   string
	}
	out := map[dest]*dlmpeerv1.Copies{}
	get := func(node uint32, ls string) *dlmpeerv1.Copies {
		d := dest{node, ls}
		c := out[d]
		if c == nil {
			cfg, ok := s.lsCfg[ls]
			if !ok {
				s.log.WithField("lockspace", ls).Error("recovery: no configuration for lockspace")
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
		c.Dir = append(c.Dir, &dlmpeerv1.DirEntry{Resource: k.Resource, Master: master})
	}
	for _, cl := range s.locks {
		if cl.state == 0 || !plan.Moves(cl.master) {
			continue
		}
		to := plan.NewMaster(cl.ls, cl.res)
		c := get(to, cl.ls)
		c.Locks = append(c.Locks, cl.toProto())
		register(directory.Key{Lockspace: cl.ls, Resource: cl.res}, to)
	}
	if !plan.Moves(s.self) {
		for k := range s.mastered {
			register(k, s.self)
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
		slices.SortFunc(c.Dir, func(a, b *dlmpeerv1.DirEntry) int { return strings.Compare(a.Resource, b.Resource) })
		if d.node == s.self {
			s.onCopies(s.self, c)
		} else {
			s.out(d.node).log.Push(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_Copies{Copies: c}})
		}
	}
	done := &dlmpeerv1.CopiesDone{Epoch: rec.id.Epoch, Round: rec.id.Round}
	for _, n := range plan.New {
		if n != s.self {
			s.out(n).log.Push(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_CopiesDone{CopiesDone: done}})
		}
	}
	s.onCopiesDone(s.self, rec.id)
}

func (cl *copyLock) toProto() *dlmpeerv1.CopyLock {
	c := &dlmpeerv1.CopyLock{Resource: cl.res, Client: cl.key.Owner.Client, Pid: cl.pid, LockId: uint64(cl.key.ID),
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
	return c
}

// onCopies collects copies for resources this node will master.
func (s *Server) onCopies(from uint32, c *dlmpeerv1.Copies) {
	id := directory.ID{Epoch: c.GetEpoch(), Round: c.GetRound()}
	if s.rec == nil || s.rec.id != id {
		return
	}
	for _, d := range c.GetDir() {
		k := directory.Key{Lockspace: c.GetLockspace(), Resource: d.GetResource()}
		if !s.rec.dir.Set(k, d.GetMaster()) {
			s.log.WithFields(logrus.Fields{"lockspace": k.Lockspace, "resource": k.Resource, "from": from, "master": d.GetMaster()}).
				Error("recovery: two masters registered for a resource; keeping the first")
		}
	}
	if len(c.GetLocks()) == 0 {
		return
	}
	g := s.rec.copies[c.GetLockspace()]
	if g == nil {
		g = &gained{cfg: cfgFromProto(c.GetConfig()), locks: map[string][]lockspace.LockInfo{},
			pids: map[lockspace.Owner]int32{}}
		s.rec.copies[c.GetLockspace()] = g
	}
	for _, l := range c.GetLocks() {
		if len(l.GetResource()) == 0 || len(l.GetResource()) > lockspace.MaxResourceName {
			continue
		}
		o := lockspace.Owner{Node: lockspace.NodeID(from), Client: l.GetClient()}
		li := lockspace.LockInfo{Resource: l.GetResource(), Key: lockspace.Key{Owner: o, ID: lockspace.LockID(l.GetLockId())},
			State: lockState(l.GetState()), Granted: mode(l.GetGranted()), Requested: mode(l.GetRequested()),
			Flags: lockspace.Flags(l.GetFlags()), Persistent: l.GetPersistent(), Orphan: l.GetOrphan(), Seq: l.GetSeq(),
			HasLVB: l.GetHasLvb(), LVB: lvbOf(l.GetLvb()), LVBValid: l.GetLvbValid()}
		if d := l.GetDeadlineUnixNano(); d != 0 {
			li.Deadline = time.Unix(0, d)
		}
		g.locks[li.Resource] = append(g.locks[li.Resource], li)
		g.pids[o] = l.GetPid()
	}
}

func (s *Server) onCopiesDone(from uint32, id directory.ID) {
	if s.rec == nil || s.rec.id != id {
		return
	}
	if s.rec.barrier.CopiesDone(from) && s.rec.plan != nil {
		s.rebuild()
	}
}

// rebuild installs the new directory: drop what moved away and the lost
// nodes' locks, rebuild what moved here, resume.
func (s *Server) rebuild() {
	rec := s.rec
	plan := *rec.plan
	// Grant nothing a lost node held before its lease has surely ended,
	// nor anything at all before this node holds its own lease.
	if wait := s.leaseWait(plan); wait > 0 || !s.leaseHeld() {
		if !rec.waiting {
			s.log.WithFields(logrus.Fields{"recovery": rec.id.String(), "wait": wait.Round(time.Millisecond).String(), "lost": plan.Lost}).
				Info("recovery: waiting for the lost nodes' leases to end and for this node's lease")
		}
		rec.waiting = true
		time.AfterFunc(max(wait, tick), func() {
			s.do(func() {
				if s.rec == rec {
					s.rebuild()
				}
			})
		})
		return
	}
	type lsEffects struct {
		ls   string
		effs []lockspace.Effect
	}
	var all []lsEffects
	now := time.Now()
	if plan.Moves(s.self) {
		// Full, or this node kept nothing: what it mastered moves.
		s.tables = map[string]*lockspace.Lockspace{}
		s.mastered = map[directory.Key]*mastery{}
	} else {
		for _, name := range sortedKeys(s.tables) {
			t := s.tables[name]
			for _, n := range plan.Lost {
				all = append(all, lsEffects{name, t.DropNode(lockspace.NodeID(n))})
			}
			if t.Len() == 0 {
				delete(s.tables, name)
			}
		}
		for o := range s.pids {
			if slices.Contains(plan.Lost, uint32(o.Node)) || !slices.Contains(plan.New, uint32(o.Node)) {
				delete(s.pids, o)
			}
		}
	}
	for _, name := range sortedKeys(rec.copies) {
		g := rec.copies[name]
		t, err := s.table(name, g.cfg)
		if err != nil {
			s.log.WithError(err).WithField("lockspace", name).Error("recovery: cannot create lockspace")
			continue
		}
		for o, pid := range g.pids {
			s.pids[o] = pid
		}
		res := make([]string, 0, len(g.locks))
		for r := range g.locks {
			res = append(res, r)
		}
		slices.Sort(res)
		for _, r := range res {
			s.becomeMaster(directory.Key{Lockspace: name, Resource: r}, now)
			effs, err := t.Rebuild(r, g.locks[r])
			if err != nil {
				s.log.WithError(err).WithFields(logrus.Fields{"lockspace": name, "resource": r}).Error("recovery: rebuild failed")
				continue
			}
			all = append(all, lsEffects{name, effs})
		}
	}
	s.dirTable = rec.dir
	s.routes = map[directory.Key]*route{}
	for _, cl := range s.locks {
		switch {
		case cl.state == 0:
			cl.master = 0 // looked up again when sent
		case plan.Moves(cl.master):
			cl.master = plan.NewMaster(cl.ls, cl.res)
		}
	}
	s.dir = plan.New
	s.last = plan.Installed
	s.haveLast = true
	s.rec = nil
	s.log.WithFields(logrus.Fields{"recovery": rec.id.String(), "members": plan.New, "full": plan.Full,
		"lost": plan.Lost, "took": time.Since(rec.started).String()}).Info("recovery done: granting")
	for _, e := range all {
		s.route(e.ls, e.effs)
	}
	if !s.readyDone {
		s.readyDone = true
		if s.ready != nil {
			s.ready()
		}
	}
	// Resume: what waited for the recovery, in order.
	deferred, outbox := s.deferred, s.outbox
	s.deferred, s.outbox = nil, nil
	for _, p := range outbox {
		s.submit(p)
	}
	for _, f := range deferred {
		f()
	}
}
