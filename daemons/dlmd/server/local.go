package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// SystemPrefix starts the names of the system's own lockspaces (those of
// the cluster daemons): root only.
const SystemPrefix = "openssi."

var lockspaceRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// ValidLockspace checks a lockspace name: 1 to 64 of A-Z a-z 0-9 _ . -.
func ValidLockspace(name string) error {
	if !lockspaceRE.MatchString(name) {
		return fmt.Errorf("dlm: lockspace name %q: want 1 to 64 of A-Z, a-z, 0-9, '_', '.', '-': %w", name, lockspace.ErrInvalid)
	}
	return nil
}

// LockspaceStore keeps each lockspace's owner, the same on every node.
type LockspaceStore interface {
	// Get returns the lockspace's config, creating it for creator (owned by
	// its uid and gid; System for names starting with SystemPrefix) when
	// it does not exist yet.
	Get(ctx context.Context, name string, creator lockspace.Cred) (lockspace.Config, error)
}

// session is one client's lock session (an owner).
type session struct {
	id     uint64
	pid    int32
	cred   lockspace.Cred
	q      *queue[*dlmv1.ServerMessage]
	closed bool // loop-owned
	// unlocking counts the session's unlocks in flight by master, and
	// parked holds its requests waiting for them (loop-owned; see park).
	unlocking map[uint32]int
	parked    []*pending
	// lost: the node fenced; the session's locks are gone.
	lost atomic.Bool
}

func (ss *session) send(m *dlmv1.ServerMessage) { ss.q.push(m) }

// API is the local Dlm service, a thin adapter over Server.
type API struct {
	dlmv1.UnimplementedDlmServer
	s *Server

	mu    sync.Mutex
	cache map[string]lockspace.Config
}

// NewAPI returns the local API of s.
func NewAPI(s *Server) *API { return &API{s: s, cache: map[string]lockspace.Config{}} }

// Register adds the service to a gRPC server.
func (a *API) Register(g *grpc.Server) { dlmv1.RegisterDlmServer(g, a) }

// credOf returns the caller's identity, with its supplementary groups.
func credOf(ctx context.Context) (localapi.Cred, lockspace.Cred, error) {
	c, ok := localapi.CallerFrom(ctx)
	if !ok {
		return c, lockspace.Cred{}, status.Error(codes.PermissionDenied, "dlm: caller identity unknown")
	}
	return c, lockspace.Cred{UID: c.UID, GID: c.GID, Groups: groupsOf(c.PID)}, nil
}

// groupsOf reads a process's supplementary groups from /proc.
func groupsOf(pid int32) []uint32 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Groups:"); ok {
			var out []uint32
			for _, g := range strings.Fields(rest) {
				if n, err := strconv.ParseUint(g, 10, 32); err == nil {
					out = append(out, uint32(n))
				}
			}
			return out
		}
	}
	return nil
}

// lockspaceFor returns the lockspace config, checking cred may use it.
func (a *API) lockspaceFor(ctx context.Context, name string, cred lockspace.Cred) (lockspace.Config, error) {
	if err := ValidLockspace(name); err != nil {
		return lockspace.Config{}, err
	}
	a.mu.Lock()
	cfg, ok := a.cache[name]
	a.mu.Unlock()
	if !ok {
		if strings.HasPrefix(name, SystemPrefix) && cred.UID != 0 {
			return cfg, lockspace.Config{System: true}.CheckAccess(name, cred)
		}
		var err error
		if cfg, err = a.s.cfg.Lockspaces.Get(ctx, name, cred); err != nil {
			return cfg, err
		}
		a.mu.Lock()
		a.cache[name] = cfg
		a.mu.Unlock()
	}
	return cfg, cfg.CheckAccess(name, cred)
}

// Session serves one client session.
func (a *API) Session(st grpc.BidiStreamingServer[dlmv1.ClientMessage, dlmv1.ServerMessage]) error {
	ctx := st.Context()
	lc, cred, err := credOf(ctx)
	if err != nil {
		return err
	}
	s := a.s
	ss := &session{pid: lc.PID, cred: cred, q: newQueue[*dlmv1.ServerMessage]()}
	if err := s.call(ctx, func() {
		s.nextSess++
		ss.id = s.nextSess
		s.sessions[ss.id] = ss
	}); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	defer s.do(func() { s.sessionExit(ss) })
	ss.send(&dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Hello{Hello: &dlmv1.SessionHello{Node: s.self, Client: ss.id}}})
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		defer cancel()
		for {
			m, err := st.Recv()
			if err != nil || sctx.Err() != nil {
				return
			}
			if err := a.handle(sctx, ss, m); err != nil {
				ss.send(replyErr(m.GetTag(), err))
			}
		}
	}()
	for {
		items, ok := ss.q.take(sctx.Done())
		if !ok {
			break
		}
		for _, m := range items {
			if err := st.Send(m); err != nil {
				return nil
			}
		}
	}
	if ss.lost.Load() {
		return status.Errorf(codes.Aborted, "node %d was fenced: no contact with a majority of the cluster within the lease", s.self)
	}
	return nil
}

func replyErr(tag uint64, err error) *dlmv1.ServerMessage {
	return &dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Reply{Reply: &dlmv1.Reply{Tag: tag, Status: StatusOf(err), Message: wireMessage(err)}}}
}

// handle decodes one client message and hands it to the loop. An error is
// answered at once.
func (a *API) handle(ctx context.Context, ss *session, m *dlmv1.ClientMessage) error {
	s := a.s
	switch op := m.Op.(type) {
	case *dlmv1.ClientMessage_Lock:
		r := op.Lock
		if len(r.GetResource()) == 0 || len(r.GetResource()) > lockspace.MaxResourceName {
			return fmt.Errorf("dlm: resource name of %d bytes: want 1 to %d: %w", len(r.GetResource()), lockspace.MaxResourceName, lockspace.ErrInvalid)
		}
		if !mode(r.GetMode()).Valid() {
			return fmt.Errorf("dlm: mode %v: %w", r.GetMode(), lockspace.ErrInvalid)
		}
		cfg, err := a.lockspaceFor(ctx, r.GetLockspace(), ss.cred)
		if err != nil {
			return err
		}
		tag := m.GetTag()
		s.do(func() { s.localLock(ss, tag, cfg, r) })
	case *dlmv1.ClientMessage_Convert:
		r := op.Convert
		if !mode(r.GetMode()).Valid() {
			return fmt.Errorf("dlm: mode %v: %w", r.GetMode(), lockspace.ErrInvalid)
		}
		req := &dlmpeerv1.PeerRequest{Op: dlmpeerv1.Op_OP_CONVERT, LockId: r.GetLockId(), Mode: r.GetMode(), Flags: r.GetFlags(),
			TimeoutNanos: r.GetTimeoutNanos(), Lvb: r.GetLvb()}
		tag := m.GetTag()
		inReply := r.GetCompletionInReply()
		s.do(func() { s.localOp(ss, tag, req, pending{inReply: inReply}) })
	case *dlmv1.ClientMessage_Unlock:
		r := op.Unlock
		req := &dlmpeerv1.PeerRequest{Op: dlmpeerv1.Op_OP_UNLOCK, LockId: r.GetLockId(), Flags: r.GetFlags(), Lvb: r.GetLvb()}
		tag, quiet := m.GetTag(), r.GetNoReply()
		s.do(func() { s.localOp(ss, tag, req, pending{quiet: quiet}) })
	case *dlmv1.ClientMessage_Cancel:
		req := &dlmpeerv1.PeerRequest{Op: dlmpeerv1.Op_OP_CANCEL, LockId: op.Cancel.GetLockId()}
		tag := m.GetTag()
		s.do(func() { s.localOp(ss, tag, req, pending{}) })
	default:
		return fmt.Errorf("dlm: empty request: %w", lockspace.ErrInvalid)
	}
	return nil
}

// localLock starts a new lock of a session.
func (s *Server) localLock(ss *session, tag uint64, cfg lockspace.Config, r *dlmv1.LockRequest) {
	if ss.closed {
		return
	}
	s.lsCfg[r.GetLockspace()] = cfg
	s.nextLock++
	id := lockspace.LockID(s.nextLock)
	fl := lockspace.Flags(r.GetFlags())
	cl := &copyLock{ls: r.GetLockspace(), res: r.GetResource(), key: lockspace.Key{Owner: lockspace.Owner{Node: lockspace.NodeID(s.self), Client: ss.id}, ID: id},
		sess: ss, pid: ss.pid, flags: fl, persistent: fl&lockspace.Persistent != 0}
	s.locks[id] = cl
	req := &dlmpeerv1.PeerRequest{Op: dlmpeerv1.Op_OP_LOCK, Lockspace: cl.ls, Config: cfgToProto(cfg), Resource: cl.res,
		Client: ss.id, Pid: ss.pid, LockId: uint64(id), Mode: r.GetMode(), Flags: r.GetFlags(),
		TimeoutNanos: r.GetTimeoutNanos(), Cred: credToProto(ss.cred)}
	s.submit(&pending{req: req, sess: ss, ctag: tag, lock: cl, inReply: r.GetCompletionInReply()})
}

// localOp starts a convert, unlock or cancel of one of the session's locks;
// how carries the client's reply options.
func (s *Server) localOp(ss *session, tag uint64, req *dlmpeerv1.PeerRequest, how pending) {
	if ss.closed {
		return
	}
	cl := s.locks[lockspace.LockID(req.LockId)]
	if cl == nil || cl.sess != ss {
		ss.send(replyErr(tag, fmt.Errorf("dlm: lock %d: %w", req.LockId, lockspace.ErrUnknownLock)))
		return
	}
	req.Lockspace, req.Resource, req.Client, req.Pid = cl.ls, cl.res, ss.id, ss.pid
	req.Config = cfgToProto(s.lsCfg[cl.ls])
	s.submit(&pending{req: req, sess: ss, ctag: tag, lock: cl, inReply: how.inReply, quiet: how.quiet})
}

// sessionExit handles a client whose session ended (it exited or
// crashed): its locks go at once, persistent ones stay as orphans.
func (s *Server) sessionExit(ss *session) {
	if s.rec != nil || !s.haveLast {
		s.deferred = append(s.deferred, func() { s.sessionExit(ss) })
		ss.closed = true
		return
	}
	ss.closed = true
	ss.q.close()
	delete(s.sessions, ss.id)
	ss.parked = nil // their copies go with the session's below
	masters := map[uint32]bool{}
	for id, cl := range s.locks {
		if cl.sess != ss {
			continue
		}
		if cl.state != 0 && cl.master != 0 {
			masters[cl.master] = true
		}
		if cl.persistent && (cl.state == lockspace.StateGranted || cl.state == lockspace.StateConverting) {
			cl.state, cl.rq, cl.deadline, cl.orphan, cl.sess = lockspace.StateGranted, 0, timeZero, true, nil
			continue
		}
		delete(s.locks, id)
	}
	// Requests in flight reach their masters before the exit does (same
	// channel), so every master that may hold one hears of it.
	for _, p := range s.pend {
		if p.sess == ss {
			masters[p.master] = true
		}
	}
	ms := make([]uint32, 0, len(masters))
	for n := range masters {
		ms = append(ms, n)
	}
	slices.Sort(ms)
	for _, n := range ms {
		if n == s.self {
			s.onOwnerExit(s.self, ss.id)
			continue
		}
		s.out(n).log.Push(&dlmpeerv1.PeerMessage{Msg: &dlmpeerv1.PeerMessage_OwnerExit{OwnerExit: &dlmpeerv1.OwnerExit{Client: ss.id}}})
	}
}

// Locks lists the resources with locks across the cluster, in the
// lockspaces the caller may use (root: all).
func (a *API) Locks(ctx context.Context, r *dlmv1.LocksRequest) (*dlmv1.LocksReply, error) {
	_, cred, err := credOf(ctx)
	if err != nil {
		return nil, err
	}
	if r.GetLockspace() != "" {
		if err := ValidLockspace(r.GetLockspace()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	s := a.s
	var members []uint32
	var out []*dlmv1.Resource
	if err := s.call(ctx, func() {
		members = slices.Clone(s.dir)
		out = s.dump(r.GetLockspace())
	}); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	reply := &dlmv1.LocksReply{}
	for _, n := range members {
		if n == s.self {
			continue
		}
		c, err := s.conn(ctx, n)
		if err == nil {
			var d *dlmpeerv1.DumpReply
			if d, err = dlmpeerv1.NewPeerClient(c).Dump(ctx, &dlmpeerv1.DumpRequest{Lockspace: r.GetLockspace()}); err == nil {
				out = append(out, d.GetResources()...)
				continue
			}
		}
		reply.Errors = append(reply.Errors, fmt.Sprintf("node %d: %v", n, err))
	}
	allowed := map[string]bool{}
	for _, res := range out {
		ok, seen := allowed[res.GetLockspace()]
		if !seen {
			ok = cred.UID == 0
			if !ok {
				a.mu.Lock()
				cfg, known := a.cache[res.GetLockspace()]
				a.mu.Unlock()
				if !known {
					cfg, known = s.lockspaceConfig(ctx, res.GetLockspace())
				}
				ok = known && cfg.Allows(cred)
			}
			allowed[res.GetLockspace()] = ok
		}
		if ok {
			reply.Resources = append(reply.Resources, res)
		}
	}
	slices.SortFunc(reply.Resources, func(x, y *dlmv1.Resource) int {
		if c := strings.Compare(x.GetLockspace(), y.GetLockspace()); c != 0 {
			return c
		}
		return strings.Compare(x.GetName(), y.GetName())
	})
	if r.GetLockspace() != "" && len(reply.Resources) == 0 && cred.UID != 0 {
		if _, err := a.lockspaceFor(ctx, r.GetLockspace(), cred); errors.Is(err, lockspace.ErrAccess) {
			return nil, status.Error(codes.PermissionDenied, wireMessage(err))
		}
	}
	return reply, nil
}

// Purge releases this node's orphans in a lockspace (all, or one
// process's): each is unlocked at its master as its session would have.
// The caller must be allowed to use the lockspace.
func (a *API) Purge(ctx context.Context, r *dlmv1.PurgeRequest) (*dlmv1.PurgeReply, error) {
	_, cred, err := credOf(ctx)
	if err != nil {
		return nil, err
	}
	name := r.GetLockspace()
	if err := ValidLockspace(name); err != nil {
		return nil, status.Error(codes.InvalidArgument, wireMessage(err))
	}
	if r.GetPid() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "pid %d: want a process id, or 0 for every process", r.GetPid())
	}
	s := a.s
	var denied error
	if strings.HasPrefix(name, SystemPrefix) {
		denied = lockspace.Config{System: true}.CheckAccess(name, cred)
	}
	released := 0
	if err := s.call(ctx, func() {
		cfg, known := s.lsCfg[name]
		switch {
		case denied != nil, !known: // a lockspace this node never used has no orphans here
		default:
			if denied = cfg.CheckAccess(name, cred); denied == nil {
				released = s.purge(name, r.GetPid())
			}
		}
	}); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if denied != nil {
		return nil, status.Error(codes.PermissionDenied, wireMessage(denied))
	}
	return &dlmv1.PurgeReply{Released: uint32(released)}, nil
}

// purge unlocks this node's orphans in lockspace ls (of process pid, or
// all with pid 0) and returns how many it released.
func (s *Server) purge(ls string, pid int32) int {
	var ids []lockspace.LockID
	for id, cl := range s.locks {
		if cl.orphan && !cl.purging && cl.ls == ls && (pid == 0 || cl.pid == pid) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		cl := s.locks[id]
		cl.purging = true
		req := &dlmpeerv1.PeerRequest{Op: dlmpeerv1.Op_OP_UNLOCK, Lockspace: cl.ls, Config: cfgToProto(s.lsCfg[cl.ls]), Resource: cl.res,
			Client: cl.key.Owner.Client, Pid: cl.pid, LockId: uint64(id)}
		s.submit(&pending{req: req, lock: cl, quiet: true})
	}
	return len(ids)
}

// lockspaceConfig returns a lockspace's config as the loop knows it.
func (s *Server) lockspaceConfig(ctx context.Context, name string) (lockspace.Config, bool) {
	var cfg lockspace.Config
	var ok bool
	_ = s.call(ctx, func() { cfg, ok = s.lsCfg[name] })
	return cfg, ok
}
