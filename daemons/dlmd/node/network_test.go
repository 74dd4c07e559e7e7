package node

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// network is an in-memory cluster of Nodes for tests, in the manner of
// etcd's rafttest: it plays the shells (links, pings, sessions, the
// clock) and lets a test deliver, hold, drop and reorder messages, cut
// and heal the network, crash, restart and stop nodes, and move a fake
// clock. Links are reliable and ordered while both ends live, as the
// shell's are: a message held by a partition is delivered after the
// heal, unless a restart or a closed link made it moot.
type network struct {
	t     testing.TB
	now   time.Time
	nodes map[uint32]*member
	queue []envelope
	// cut holds the pairs (lower node first) that cannot talk.
	cut map[[2]uint32]bool
	// view is clmsd's membership: the epoch and the nodes UP.
	epoch uint64
	up    map[uint32]bool
	lease time.Duration
	// leases are the nodes whose dlmd.lease is not lease.
	leases map[uint32]time.Duration
	toss   time.Duration
	// limits are every node's dlmd limits.
	limits Limits
	out    strings.Builder
	// The fencing-token check, as a storage system would make it: the
	// highest token told to any client for each resource, the token
	// each lock was last told, and the first violation.
	maxToken  map[string]uint64
	lockToken map[[2]uint64]uint64
	tokenErr  error
}

// member is one node's dlmd and its shell's state.
type member struct {
	id      uint32
	n       *Node
	running bool
	// attached is, per peer, the link of it this node's shell accepted.
	attached map[uint32]Link
	// outs are this node's current links to masters; masterInc the
	// incarnation of the master each met at its hello.
	outs      map[uint32]Link
	masterInc map[uint64]uint64
	lastPing  time.Time
}

// envelope is a message in flight.
type envelope struct {
	from, to uint32
	link     Link // as the sender named it
	msg      *dlmpeerv1.PeerMessage
}

const netTick = 20 * time.Millisecond

var netT0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func newNetwork(t testing.TB, n int, lease, toss time.Duration, leases map[uint32]time.Duration) *network {
	nw := &network{t: t, now: netT0, nodes: map[uint32]*member{}, cut: map[[2]uint32]bool{},
		epoch: 1, up: map[uint32]bool{}, lease: lease, leases: leases, toss: toss,
		maxToken: map[string]uint64{}, lockToken: map[[2]uint64]uint64{}}
	for i := 1; i <= n; i++ {
		nw.up[uint32(i)] = true
	}
	for i := 1; i <= n; i++ {
		nw.boot(uint32(i), 1)
	}
	return nw
}

// logHook prints a node's log lines (Info and above) into the output.
type logHook struct {
	nw   *network
	node uint32
}

func (h logHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel, logrus.InfoLevel}
}

func (h logHook) Fire(e *logrus.Entry) error {
	keys := make([]string, 0, len(e.Data))
	for k := range e.Data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintf(&h.nw.out, "n%d: %s", h.node, e.Message)
	for _, k := range keys {
		fmt.Fprintf(&h.nw.out, " %s=%v", k, e.Data[k])
	}
	h.nw.out.WriteByte('\n')
	return nil
}

// boot starts node id's dlmd (incarnation inc) from clmsd's view.
func (nw *network) boot(id uint32, inc uint64) {
	log := logrus.New()
	log.SetOutput(devNull{})
	log.SetLevel(logrus.InfoLevel)
	log.AddHook(logHook{nw: nw, node: id})
	m := &member{id: id, running: true, attached: map[uint32]Link{}, outs: map[uint32]Link{}, masterInc: map[uint64]uint64{},
		n: New(Config{Node: id, Incarnation: inc, Lease: nw.leaseOf(id), Toss: nw.toss, Tick: netTick, Limits: nw.limits, Log: log})}
	nw.nodes[id] = m
	m.n.Start(nw.now, nw.epoch, nw.upList())
	nw.collect(m)
}

// leaseOf is node id's dlmd.lease.
func (nw *network) leaseOf(id uint32) time.Duration {
	if l, ok := nw.leases[id]; ok {
		return l
	}
	return nw.lease
}

// hear tells to what from says of its lease (as a hello, ping or pong
// carries it).
func hear(to, from *member) {
	setting, inUse := from.n.Lease()
	to.n.HeardLease(from.id, setting, inUse)
}

type devNull struct{}

func (devNull) Write(p []byte) (int, error) { return len(p), nil }

func (nw *network) upList() []uint32 {
	var out []uint32
	for n, ok := range nw.up {
		if ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func (nw *network) sorted() []*member {
	ids := make([]uint32, 0, len(nw.nodes))
	for id := range nw.nodes {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]*member, len(ids))
	for i, id := range ids {
		out[i] = nw.nodes[id]
	}
	return out
}

func (nw *network) blocked(a, b uint32) bool {
	if a > b {
		a, b = b, a
	}
	return nw.cut[[2]uint32{a, b}]
}

// collect carries out what m's Node asks for.
func (nw *network) collect(m *member) {
	if !m.running {
		return
	}
	rd := m.n.Ready()
	for _, msg := range rd.Messages {
		if msg.Link.Out {
			m.outs[msg.Link.Node] = msg.Link
		}
		nw.queue = append(nw.queue, envelope{from: m.id, to: msg.Link.Node, link: msg.Link, msg: msg.Msg})
	}
	for _, s := range rd.Sessions {
		fmt.Fprintf(&nw.out, "n%d.s%d: %s\n", m.id, s.Session, describeSession(s.Msg))
	}
	nw.checkTokens(m, rd)
	for _, e := range rd.Ended {
		how := "ended"
		if e.Lost {
			how = "ended: locks lost"
		}
		fmt.Fprintf(&nw.out, "n%d.s%d: %s\n", m.id, e.Session, how)
	}
	for _, l := range rd.Closed {
		nw.dropLink(m.id, l)
		if l.Out {
			if m.outs[l.Node] == l {
				delete(m.outs, l.Node)
			}
		} else if m.attached[l.Node] == l {
			delete(m.attached, l.Node)
		}
	}
	if rd.Installed {
		fmt.Fprintf(&nw.out, "n%d: ready\n", m.id)
	}
}

// tokenGrant is a grant a master made, as the network saw it leave.
type tokenGrant struct {
	res   string
	lock  [2]uint64 // owner node, lock id
	mode  lockspace.Mode
	token uint64
}

// grantsOf returns the grants node m made as a master in rd, in no
// particular order: the effects and replies it sends, and what it tells
// its own sessions about locks it masters.
func grantsOf(m *member, rd Ready) []tokenGrant {
	var out []tokenGrant
	add := func(node uint32, e *dlmpeerv1.PeerEffect) {
		if e != nil && e.Kind == dlmpeerv1.EffectKind(lockspace.Granted) {
			out = append(out, tokenGrant{e.Lockspace + "/" + string(e.Resource), [2]uint64{uint64(node), e.LockId}, mode(e.Mode), e.Token})
		}
	}
	for _, msg := range rd.Messages {
		add(msg.Link.Node, msg.Msg.GetEffect())
		add(msg.Link.Node, msg.Msg.GetReply().GetEffect())
	}
	for _, s := range rd.Sessions {
		c := s.Msg.GetCompletion()
		if c == nil {
			c = s.Msg.GetReply().GetCompletion()
		}
		if c == nil || !c.Granted {
			continue
		}
		if cl := m.n.locks[lockspace.LockID(c.LockId)]; cl != nil && cl.master == m.id {
			out = append(out, tokenGrant{cl.ls + "/" + cl.res, [2]uint64{uint64(m.id), c.LockId}, mode(c.Mode), c.Token})
		}
	}
	return out
}

// checkTokens checks the fencing tokens of the grants node m made, as a
// storage system would: a PW or EX grant has a token, weaker grants none;
// a grant keeps the token its lock held (a conversion down from EX to PW)
// or takes one above every token granted on the resource before, by any
// master. The network collects each node's Ready right after the call
// that made it, so the order of collection is the order of the grants;
// within one Ready (one master's step) the order is not kept, but the
// tokens must still be new and above those of earlier steps.
func (nw *network) checkTokens(m *member, rd Ready) {
	if nw.tokenErr != nil {
		return
	}
	fresh := map[string][]uint64{}
	for _, g := range grantsOf(m, rd) {
		switch {
		case g.mode != lockspace.PW && g.mode != lockspace.EX:
			if g.token != 0 {
				nw.tokenErr = fmt.Errorf("%s: lock %v granted %v with token %d", g.res, g.lock, g.mode, g.token)
			}
			delete(nw.lockToken, g.lock)
		case g.token == 0:
			nw.tokenErr = fmt.Errorf("%s: lock %v granted %v without a token", g.res, g.lock, g.mode)
		case g.token == nw.lockToken[g.lock]:
		default:
			fresh[g.res] = append(fresh[g.res], g.token)
			nw.lockToken[g.lock] = g.token
		}
	}
	for _, res := range sortedKeys(fresh) {
		ts := fresh[res]
		slices.Sort(ts)
		if ts[0] <= nw.maxToken[res] || len(slices.Compact(slices.Clone(ts))) != len(ts) {
			nw.tokenErr = fmt.Errorf("%s: node %d granted tokens %v, not all new and above %s", res, m.id, ts, tokenString(nw.maxToken[res]))
			return
		}
		nw.maxToken[res] = ts[len(ts)-1]
	}
}

// tokenString renders a fencing token as epoch.round+n.
func tokenString(t uint64) string {
	return fmt.Sprintf("%d.%d+%d", t>>40, t>>32&255, t&(1<<32-1)) // era as epoch.round
}

// dropLink forgets what node from queued on link l.
func (nw *network) dropLink(from uint32, l Link) {
	nw.queue = slices.DeleteFunc(nw.queue, func(e envelope) bool { return e.from == from && e.link == l })
}

// connect brings up m's link l to its master as the shell would (the
// hello): it reports whether the link carries messages now.
func (nw *network) connect(m *member, l Link) bool {
	r := nw.nodes[l.Node]
	if !m.running || r == nil || !r.running || nw.blocked(m.id, r.id) {
		return false
	}
	inc := r.n.Incarnation()
	if seen := m.masterInc[l.ID]; seen != 0 && seen != inc {
		// A new dlmd there: what the old one was sent is gone with it.
		m.masterInc[l.ID] = inc
		nw.dropLink(m.id, l)
		m.n.PeerRestarted(nw.now, l)
		nw.collect(m)
		return false
	}
	m.masterInc[l.ID] = inc
	in := Link{Node: m.id, Inc: l.Inc, ID: l.ID}
	if r.attached[m.id] != in {
		ok, _ := r.n.Attach(nw.now, m.id, l.Inc, l.ID, FeatEffectInReply|FeatByteNames)
		hear(r, m)
		nw.collect(r)
		if !ok {
			nw.dropLink(m.id, l)
			return false
		}
		hear(m, r)
		r.attached[m.id] = in
	}
	return true
}

// deliverable reports whether e can be delivered now (false, true: it
// never will be and goes).
func (nw *network) deliverable(e envelope) (ok, drop bool) {
	from, to := nw.nodes[e.from], nw.nodes[e.to]
	if from == nil || to == nil || !from.running {
		return false, true
	}
	if !to.running || nw.blocked(e.from, e.to) {
		return false, false
	}
	if !e.link.Out && e.link.Inc != to.n.Incarnation() {
		return false, true // for an earlier dlmd of the requester
	}
	return true, false
}

// deliver hands the i-th queued message to its receiver.
func (nw *network) deliver(i int, trace bool) {
	e := nw.queue[i]
	nw.queue = slices.Delete(nw.queue, i, i+1)
	from, to := nw.nodes[e.from], nw.nodes[e.to]
	if trace {
		fmt.Fprintf(&nw.out, "%d->%d %s\n", e.from, e.to, describe(e.msg))
	}
	if e.link.Out {
		if !nw.connect(from, e.link) {
			return
		}
		to.n.Step(nw.now, Link{Node: e.from, Inc: e.link.Inc, ID: e.link.ID}, e.msg)
	} else {
		to.n.Step(nw.now, Link{Node: e.from, Out: true, Inc: e.link.Inc, ID: e.link.ID}, e.msg)
	}
	nw.collect(to)
}

// next returns the index of the first message deliverable now from a
// node to another (0: any), dropping those that never will be.
func (nw *network) next(from, to uint32) int {
	for i := 0; i < len(nw.queue); {
		e := nw.queue[i]
		if from != 0 && e.from != from || to != 0 && e.to != to {
			i++
			continue
		}
		ok, drop := nw.deliverable(e)
		if drop {
			nw.queue = slices.Delete(nw.queue, i, i+1)
			continue
		}
		if ok {
			return i
		}
		i++
	}
	return -1
}

// stabilize delivers messages until none can be.
func (nw *network) stabilize(trace bool) {
	for n := 0; ; n++ {
		if n > 100000 {
			nw.t.Fatal("network: no quiet after 100000 messages")
		}
		i := nw.next(0, 0)
		if i < 0 {
			return
		}
		nw.deliver(i, trace)
	}
}

// step moves the clock by one tick: pings where due, then every node's
// Tick.
func (nw *network) step() {
	nw.now = nw.now.Add(netTick)
	for _, m := range nw.sorted() {
		if !m.running || nw.now.Sub(m.lastPing) < m.n.PingEvery() {
			continue
		}
		m.lastPing = nw.now
		for _, peer := range sortedNodes(m.outs) {
			l := m.outs[peer]
			if !nw.connect(m, l) {
				continue
			}
			hear(nw.nodes[peer], m)
			if nw.nodes[peer].n.Pinged(nw.now, m.id) {
				hear(m, nw.nodes[peer])
				m.n.Ponged(l, nw.now)
			}
		}
	}
	for _, m := range nw.sorted() {
		if m.running {
			m.n.Tick(nw.now)
			nw.collect(m)
		}
	}
}

// checkSafety fails the test when two clients hold incompatible granted
// locks on a resource (by their nodes' copies, which is what they act
// on; a lock whose conversion or unlock is on its way to the master is
// left out, its client gave its mode up), and runs every Node's own
// Check.
func (nw *network) checkSafety() error {
	type holder struct {
		node uint32
		id   lockspace.LockID
		mode lockspace.Mode
	}
	if nw.tokenErr != nil {
		return nw.tokenErr
	}
	held := map[string][]holder{}
	for _, m := range nw.sorted() {
		if !m.running {
			continue
		}
		if err := m.n.Check(); err != nil {
			return err
		}
		giving := map[*copyLock]bool{}
		for _, p := range m.n.pend {
			if p.req.Op == dlmpeerv1.Op_OP_CONVERT || p.req.Op == dlmpeerv1.Op_OP_UNLOCK {
				giving[p.lock] = true
			}
		}
		for id, cl := range m.n.locks {
			if giving[cl] {
				continue
			}
			if cl.state == lockspace.StateGranted || cl.state == lockspace.StateConverting {
				k := cl.ls + "/" + cl.res
				held[k] = append(held[k], holder{m.id, id, cl.gr})
			}
		}
	}
	for k, hs := range held {
		for i := range hs {
			for j := i + 1; j < len(hs); j++ {
				if !lockspace.Compatible(hs[i].mode, hs[j].mode) {
					return fmt.Errorf("%s: node %d's lock %d (%v) and node %d's lock %d (%v) are both granted",
						k, hs[i].node, hs[i].id, hs[i].mode, hs[j].node, hs[j].id, hs[j].mode)
				}
			}
		}
	}
	return nil
}

// describe renders a peer message in one line.
func describe(m *dlmpeerv1.PeerMessage) string {
	switch x := m.Msg.(type) {
	case *dlmpeerv1.PeerMessage_Request:
		r := x.Request
		s := fmt.Sprintf("request %s %s/%s #%d tag=%d at=%d.%d", strings.ToLower(strings.TrimPrefix(r.Op.String(), "OP_")),
			r.Lockspace, r.Resource, r.LockId, r.Tag, r.Epoch, r.Round)
		if r.Op == dlmpeerv1.Op_OP_LOCK || r.Op == dlmpeerv1.Op_OP_CONVERT {
			s += " " + mode(r.Mode).String()
		}
		return s
	case *dlmpeerv1.PeerMessage_Reply:
		r := x.Reply
		s := fmt.Sprintf("reply tag=%d %s", r.Tag, statusName(r.Status))
		if r.Effect != nil {
			s += " with " + effectFromProto(0, r.Effect).String()
		}
		return s
	case *dlmpeerv1.PeerMessage_Effect:
		return "effect " + effectFromProto(0, x.Effect).String()
	case *dlmpeerv1.PeerMessage_Marker:
		return fmt.Sprintf("marker %d.%d inc=%d", x.Marker.Epoch, x.Marker.Round, x.Marker.Incarnation)
	case *dlmpeerv1.PeerMessage_MarkerAck:
		return fmt.Sprintf("marker-ack %d.%d inc=%d", x.MarkerAck.Epoch, x.MarkerAck.Round, x.MarkerAck.Incarnation)
	case *dlmpeerv1.PeerMessage_Copies:
		c := x.Copies
		return fmt.Sprintf("copies %d.%d %s locks=%d dir=%d", c.Epoch, c.Round, c.Lockspace, len(c.Locks), len(c.Dir))
	case *dlmpeerv1.PeerMessage_CopiesDone:
		return fmt.Sprintf("copies-done %d.%d", x.CopiesDone.Epoch, x.CopiesDone.Round)
	case *dlmpeerv1.PeerMessage_OwnerExit:
		return fmt.Sprintf("owner-exit client=%d", x.OwnerExit.Client)
	case *dlmpeerv1.PeerMessage_Lookup:
		return fmt.Sprintf("lookup %s/%s tag=%d", x.Lookup.Lockspace, x.Lookup.Resource, x.Lookup.Tag)
	case *dlmpeerv1.PeerMessage_LookupReply:
		r := x.LookupReply
		if r.Status != dlmv1.Status_STATUS_OK {
			return fmt.Sprintf("lookup-reply tag=%d %s", r.Tag, statusName(r.Status))
		}
		if r.TokenFloor != 0 {
			return fmt.Sprintf("lookup-reply tag=%d master=%d token-floor=%s", r.Tag, r.Master, tokenString(r.TokenFloor))
		}
		return fmt.Sprintf("lookup-reply tag=%d master=%d", r.Tag, r.Master)
	case *dlmpeerv1.PeerMessage_Remove:
		return fmt.Sprintf("remove %s/%s token=%s", x.Remove.Lockspace, x.Remove.Resource, tokenString(x.Remove.Token))
	case *dlmpeerv1.PeerMessage_Leave:
		return fmt.Sprintf("leave inc=%d", x.Leave.Incarnation)
	}
	return fmt.Sprintf("%v", m)
}

func statusName(s dlmv1.Status) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATUS_"))
}

// describeSession renders a message to a session in one line.
func describeSession(m *dlmv1.ServerMessage) string {
	switch x := m.Msg.(type) {
	case *dlmv1.ServerMessage_Reply:
		r := x.Reply
		s := fmt.Sprintf("reply tag=%d %s", r.Tag, statusName(r.Status))
		if r.LockId != 0 {
			s += fmt.Sprintf(" lock=%d", r.LockId)
		}
		if r.Completion != nil {
			s += " with " + describeCompletion(r.Completion)
		}
		if r.Status == dlmv1.Status_STATUS_LIMIT {
			s += ": " + r.Message
		}
		return s
	case *dlmv1.ServerMessage_Completion:
		return describeCompletion(x.Completion)
	case *dlmv1.ServerMessage_Blocking:
		return fmt.Sprintf("blocking lock=%d %v", x.Blocking.LockId, mode(x.Blocking.Mode))
	}
	return fmt.Sprintf("%v", m)
}

func describeCompletion(c *dlmv1.Completion) string {
	if !c.Granted {
		s := fmt.Sprintf("refused lock=%d %s", c.LockId, statusName(c.Status))
		if c.Held {
			s += fmt.Sprintf(" held %v", mode(c.Mode))
		}
		return s
	}
	s := fmt.Sprintf("granted lock=%d %v", c.LockId, mode(c.Mode))
	if c.Token != 0 {
		s += " token=" + tokenString(c.Token)
	}
	if c.HasLvb {
		s += fmt.Sprintf(" lvb=%q", strings.TrimRight(string(c.Lvb), "\x00"))
		if !c.LvbValid {
			s += " invalid"
		}
	}
	return s
}
