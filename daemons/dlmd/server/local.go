package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	"github.com/openssi/openssi/daemons/dlmd/node"
	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// SystemPrefix starts the names of the system's own lockspaces (those of
// the cluster daemons): root only.
const SystemPrefix = node.SystemPrefix

// ValidLockspace checks a lockspace name: 1 to 64 of A-Z a-z 0-9 _ . -.
func ValidLockspace(name string) error { return node.ValidLockspace(name) }

// validFor checks a lockspace name a caller gives: root may also name a
// user's own lockspace as the nodes know it (~<uid>.<name>), to list,
// purge, change or delete it; another caller who names one so is refused
// it (ErrAccess: a name it may not use, not a malformed one).
func validFor(name string, cred lockspace.Cred) error {
	if strings.HasPrefix(name, "~") && node.ValidStoredLockspace(name) == nil {
		if cred.UID == 0 {
			return nil
		}
		return fmt.Errorf("dlm: lockspace %q: ~<uid>.<name> is how dlmd stores a user's own lockspace, which only root names so (a user names its own without the prefix): caller is uid %d: %w", name, cred.UID, lockspace.ErrAccess)
	}
	return ValidLockspace(name)
}

// LockspaceStore keeps each lockspace's owner, the same on every node.
// Names are as the nodes know them: a shared name, or a user's own
// (node.UserLockspace).
type LockspaceStore interface {
	// Get returns the lockspace's config, creating it for creator (owned by
	// its uid and gid; System for names starting with SystemPrefix) when
	// it does not exist yet.
	Get(ctx context.Context, name string, creator lockspace.Cred) (lockspace.Config, error)
	// Lookup returns the lockspace's config if it exists, creating nothing.
	Lookup(ctx context.Context, name string) (cfg lockspace.Config, found bool, err error)
	// Create makes a record; lockspace.ErrExists when there is one.
	Create(ctx context.Context, name string, cfg lockspace.Config, explicit bool) error
	// Update changes a record with change (its error aborts), and makes it
	// explicit (kept until deleted); ErrNoLockspace when there is none.
	Update(ctx context.Context, name string, change func(*lockspace.Config) error) (LockspaceRecord, error)
	// Delete removes a record.
	Delete(ctx context.Context, name string) error
	// List returns every record.
	List(ctx context.Context) ([]LockspaceRecord, error)
}

// sessionQueueBound is how many messages for a client may wait to be sent
// before dlmd stops reading its requests (a few hundred KiB; replies and
// completions are small). Together with dlmd.max_pending_per_session it
// bounds what a slow reader makes dlmd keep.
const sessionQueueBound = 1024

// session is the stream of one client's lock session (an owner; the core
// keeps its locks).
type session struct {
	id   uint64
	pid  int32
	cred lockspace.Cred
	q    *queue[*dlmv1.ServerMessage]
	// lost: the node fenced; the session's locks are gone.
	lost atomic.Bool
}

func (ss *session) send(m *dlmv1.ServerMessage) { ss.q.push(m) }

// API is the local Dlm service, a thin adapter over Server.
type API struct {
	dlmv1.UnimplementedDlmServer
	s *Server

	mu    sync.Mutex
	cache map[string]cached
	sweep *sweeper
}

// cached is a lockspace record as read at a time.
type cached struct {
	cfg lockspace.Config
	at  time.Time
}

// cacheTTL is how long a node uses a lockspace record it read before
// reading it again: a chmod, chown or delete reaches every node within it.
const cacheTTL = 10 * time.Second

// rereadRefused is how soon a record that refused a caller may be read
// again for another refusal.
const rereadRefused = time.Second

// NewAPI returns the local API of s.
func NewAPI(s *Server) *API { return &API{s: s, cache: map[string]cached{}} }

// openSession counts a new session of uid, or refuses it when uid has
// Config.MaxSessionsPerUID open already (an error wrapping
// node.ErrLimit); the caller calls closeSession once it ends.
func (s *Server) openSession(uid uint32) error {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if limit, n := s.cfg.MaxSessionsPerUID, s.uidSessions[uid]; limit > 0 && n >= limit {
		return fmt.Errorf("dlm: too many sessions: uid %d has %d open on this node (dlmd.max_sessions_per_uid); close some: %w", uid, n, node.ErrLimit)
	}
	s.uidSessions[uid]++
	return nil
}

func (s *Server) closeSession(uid uint32) {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	if s.uidSessions[uid]--; s.uidSessions[uid] <= 0 {
		delete(s.uidSessions, uid)
	}
}

// Register adds the service to a gRPC server.
func (a *API) Register(g *grpc.Server) { dlmv1.RegisterDlmServer(g, a) }

// credOf returns the caller's identity, with its supplementary groups.
func credOf(ctx context.Context) (localapi.Cred, lockspace.Cred, error) {
	c, ok := localapi.CallerFrom(ctx)
	if !ok {
		return c, lockspace.Cred{}, status.Error(codes.PermissionDenied, "dlm: caller identity unknown")
	}
	return c, lockspace.Cred{UID: c.UID, GID: c.GID, Groups: c.Groups}, nil
}

// lockspaceFor returns the name the nodes know the lockspace a caller
// names by, and its config, checking cred may use it; the lockspace is
// created when it does not exist yet.
//
// Names are not squatted: a name root uses is shared (one lockspace for
// everyone, owned by root unless created otherwise); a non-root caller's
// name is its own lockspace (node.UserLockspace) when it has one, else
// the shared one when an administrator made it, else a new own one. So
// one user's first use of a name never locks another user out of theirs.
func (a *API) lockspaceFor(ctx context.Context, name string, cred lockspace.Cred) (string, lockspace.Config, error) {
	if err := validFor(name, cred); err != nil {
		return name, lockspace.Config{}, err
	}
	if err := systemDenied(name, cred); err != nil {
		return name, lockspace.Config{}, err
	}
	eff, cfg, found, err := a.find(ctx, name, cred)
	if err == nil && found && !cfg.Allows(cred) && a.readBefore(eff, time.Now().Add(-rereadRefused)) {
		// Refused by a record read earlier: read it again, so that a
		// chmod or chown that lets the caller in counts at once (one
		// that shuts it out counts within cacheTTL). At most once per
		// rereadRefused, so that refused requests do not hammer Consul.
		a.forget(eff)
		eff, cfg, found, err = a.find(ctx, name, cred)
	}
	if err != nil {
		return eff, cfg, err
	}
	if !found {
		if strings.HasPrefix(eff, "~") && cred.UID == 0 {
			return eff, cfg, fmt.Errorf("dlm: lockspace %q: no such user's lockspace (root does not make one): %w", name, lockspace.ErrInvalid)
		}
		if err := a.checkLimit(ctx, cred); err != nil {
			return eff, cfg, err
		}
		if cfg, err = a.s.cfg.Lockspaces.Get(ctx, eff, cred); err != nil {
			return eff, cfg, err
		}
		a.remember(eff, cfg)
	}
	return eff, cfg, cfg.CheckAccess(name, cred)
}

// systemDenied refuses a non-root caller a system lockspace (a name
// starting with SystemPrefix); nil for any other name.
func systemDenied(name string, cred lockspace.Cred) error {
	if !strings.HasPrefix(name, SystemPrefix) {
		return nil
	}
	return lockspace.Config{System: true}.CheckAccess(name, cred)
}

// find resolves a caller's lockspace name as lockspaceFor does, creating
// nothing: eff is the lockspace found, or the one to create.
func (a *API) find(ctx context.Context, name string, cred lockspace.Cred) (eff string, cfg lockspace.Config, found bool, err error) {
	if cred.UID == 0 || strings.HasPrefix(name, SystemPrefix) {
		return a.findOne(ctx, name)
	}
	own := node.UserLockspace(cred.UID, name)
	if _, cfg, found, err = a.findOne(ctx, own); found || err != nil {
		return own, cfg, found, err
	}
	if _, cfg, found, err = a.findOne(ctx, name); found || err != nil {
		return name, cfg, found, err
	}
	return own, cfg, false, nil
}

// findOne returns a lockspace's config, from the cache or the store.
func (a *API) findOne(ctx context.Context, name string) (string, lockspace.Config, bool, error) {
	a.mu.Lock()
	c, ok := a.cache[name]
	a.mu.Unlock()
	if ok && time.Since(c.at) < cacheTTL {
		return name, c.cfg, true, nil
	}
	cfg, found, err := a.s.cfg.Lockspaces.Lookup(ctx, name)
	switch {
	case err != nil && ok:
		// The store cannot be read: go on with what was read last.
		return name, c.cfg, true, nil
	case found:
		a.remember(name, cfg)
	case ok:
		a.forget(name)
	}
	return name, cfg, found, err
}

func (a *API) remember(name string, cfg lockspace.Config) {
	a.mu.Lock()
	a.cache[name] = cached{cfg: cfg, at: time.Now()}
	a.mu.Unlock()
}

// readBefore reports whether name's cached record was read before t.
func (a *API) readBefore(name string, t time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.cache[name]
	return ok && c.at.Before(t)
}

func (a *API) forget(name string) {
	a.mu.Lock()
	delete(a.cache, name)
	a.mu.Unlock()
}

// Session serves one client session.
func (a *API) Session(st grpc.BidiStreamingServer[dlmv1.ClientMessage, dlmv1.ServerMessage]) error {
	ctx := st.Context()
	lc, cred, err := credOf(ctx)
	if err != nil {
		return err
	}
	// A session costs this dlmd goroutines and queues until it ends:
	// bounded per uid, and refused before anything is made for it.
	s := a.s
	if err := s.openSession(cred.UID); err != nil {
		return status.Error(codes.ResourceExhausted, node.WireMessage(err))
	}
	defer s.closeSession(cred.UID)
	ss := &session{pid: lc.PID, cred: cred, q: newQueue[*dlmv1.ServerMessage]()}
	if err := s.call(ctx, func() {
		ss.id = s.core.OpenSession(time.Now(), ss.pid, ss.cred)
		s.sessions[ss.id] = ss
		// Counted on the loop, so that Run's join after the loop never
		// races with a session starting.
		s.receivers.Add(1)
	}); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	defer s.do(func() {
		s.core.CloseSession(time.Now(), ss.id)
		if s.sessions[ss.id] == ss {
			ss.q.close()
			delete(s.sessions, ss.id)
		}
	})
	ss.send(&dlmv1.ServerMessage{Msg: &dlmv1.ServerMessage_Hello{Hello: &dlmv1.SessionHello{Node: s.self, Client: ss.id}}})
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	received := make(chan struct{})
	go func() {
		defer s.receivers.Done()
		defer close(received)
		defer cancel()
		for {
			// A client that does not read its replies is not read
			// either: the loop never waits for a session.
			if !ss.q.waitRoom(sessionQueueBound, sctx.Done()) {
				return
			}
			m, err := recvClient(st)
			if err != nil || sctx.Err() != nil {
				return
			}
			if m.bad != nil {
				ss.send(replyErr(m.GetTag(), m.bad))
				continue
			}
			if err := a.handle(sctx, ss, m.ClientMessage); err != nil {
				ss.send(replyErr(m.GetTag(), err))
			}
		}
	}()
	ended := a.sendAll(st, ss, sctx)
	if !ended {
		// The client went or the stream broke: the receiver has
		// returned, or does as soon as the stream's end reaches it.
		cancel()
		<-received
		return nil
	}
	// The loop ended the session while the client is still there: the
	// receiver's Recv returns only once this handler has (gRPC cannot
	// interrupt it before); Run joins it.
	if ss.lost.Load() {
		return status.Errorf(codes.Aborted, "node %d was fenced: no contact with a majority of the cluster within the lease", s.self)
	}
	if s.leaving.Load() {
		return status.Errorf(codes.Unavailable, "dlmd on node %d is stopping", s.self)
	}
	return nil
}

// sendAll sends what the loop has for the session until the stream ends
// or breaks (false) or the loop closes the session (true).
func (a *API) sendAll(st grpc.BidiStreamingServer[dlmv1.ClientMessage, dlmv1.ServerMessage], ss *session, sctx context.Context) (ended bool) {
	for {
		items, ok := ss.q.take(sctx.Done())
		if !ok {
			return sctx.Err() == nil
		}
		for _, m := range items {
			if err := st.Send(m); err != nil {
				return false
			}
		}
	}
}

func replyErr(tag uint64, err error) *dlmv1.ServerMessage { return node.ReplyErr(tag, err) }

// received is a client message as recvClient read it: bad says why one
// that arrived whole did not decode (its tag, when it could be read, is
// kept so that the answer goes to the request).
type received struct {
	*dlmv1.ClientMessage
	bad error
}

// recvClient reads the next client message. It takes the frame raw (an
// Empty keeps every field as unknown bytes) and decodes it here, so that a
// message gRPC's codec would refuse, as one with a lockspace name that is
// not UTF-8 (resource names are bytes, any value), is answered with
// STATUS_INVALID instead of ending the session and releasing all its
// locks. A frame that is not protobuf at all still ends it.
func recvClient(st grpc.ServerStream) (received, error) {
	var raw emptypb.Empty
	if err := st.RecvMsg(&raw); err != nil {
		return received{}, err
	}
	b := raw.ProtoReflect().GetUnknown()
	m := &dlmv1.ClientMessage{}
	if err := proto.Unmarshal(b, m); err != nil {
		bad := fmt.Errorf("dlm: request does not decode (a lockspace name that is not UTF-8?): %v: %w", err, lockspace.ErrInvalid)
		return received{ClientMessage: &dlmv1.ClientMessage{Tag: tagOf(b)}, bad: bad}, nil
	}
	return received{ClientMessage: m}, nil
}

// clientTagField is ClientMessage.tag's field number.
const clientTagField protowire.Number = 1

// tagOf finds the tag field of an encoded ClientMessage (0 if none).
func tagOf(b []byte) uint64 {
	var tag uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		if num == clientTagField && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				break
			}
			tag, b = v, b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			break
		}
		b = b[n:]
	}
	return tag
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
		if _, err := node.ModeOf(r.GetMode()); err != nil {
			return err
		}
		eff, cfg, err := a.lockspaceFor(ctx, r.GetLockspace(), ss.cred)
		if err != nil {
			return err
		}
		if eff != r.GetLockspace() {
			r = proto.CloneOf(r)
			r.Lockspace = eff
		}
		tag := m.GetTag()
		s.do(func() { s.core.Lock(time.Now(), ss.id, tag, cfg, r) })
	case *dlmv1.ClientMessage_Convert:
		r := op.Convert
		if _, err := node.ModeOf(r.GetMode()); err != nil {
			return err
		}
		tag := m.GetTag()
		s.do(func() { s.core.Convert(time.Now(), ss.id, tag, r) })
	case *dlmv1.ClientMessage_Unlock:
		tag := m.GetTag()
		s.do(func() { s.core.Unlock(time.Now(), ss.id, tag, op.Unlock) })
	case *dlmv1.ClientMessage_Cancel:
		tag := m.GetTag()
		s.do(func() { s.core.Cancel(time.Now(), ss.id, tag, op.Cancel) })
	default:
		return fmt.Errorf("dlm: empty request: %w", lockspace.ErrInvalid)
	}
	return nil
}

// The bounds of a page of the Locks listing: resources, and locks (a
// page ends before the resource that would pass maxPageLocks, but holds
// at least one resource), so that a reply stays far below gRPC's 4 MiB.
const (
	maxPageResources = 1000
	maxPageLocks     = 20000
)

// compareResource orders the listing: by lockspace, then name.
func compareResource(ls1 string, n1 []byte, ls2 string, n2 []byte) int {
	if c := strings.Compare(ls1, ls2); c != 0 {
		return c
	}
	return bytes.Compare(n1, n2)
}

// Locks lists the resources with locks across the cluster, in the
// lockspaces the caller may use (root: all), a page at a time when the
// request has a page size (see LocksRequest).
func (a *API) Locks(ctx context.Context, r *dlmv1.LocksRequest) (*dlmv1.LocksReply, error) {
	_, cred, err := credOf(ctx)
	if err != nil {
		return nil, err
	}
	name := r.GetLockspace()
	if name != "" {
		if err := validFor(name, cred); err != nil {
			return nil, grpcErr(err)
		}
		name, _, _, _ = a.find(ctx, name, cred)
	}
	limit := int(min(r.GetPageSize(), maxPageResources)) // 0: everything at once
	afterLS, afterName := r.GetPageAfterLockspace(), r.GetPageAfterName()
	s := a.s
	var members []uint32
	var out []*dlmv1.Resource
	if err := s.call(ctx, func() {
		members = s.core.Members()
		out = s.core.DumpPage(name, afterLS, string(afterName), limit)
	}); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	// more: a node may have resources past what it returned.
	more := limit > 0 && len(out) == limit
	reply := &dlmv1.LocksReply{}
	for _, n := range members {
		if n == s.self {
			continue
		}
		c, err := s.conn(ctx, n)
		if err == nil {
			var d *dlmpeerv1.DumpReply
			req := &dlmpeerv1.DumpRequest{Lockspace: name, Limit: uint32(limit), AfterLockspace: afterLS, AfterName: afterName}
			if d, err = dlmpeerv1.NewPeerClient(c).Dump(ctx, req); err == nil {
				more = more || limit > 0 && len(d.GetResources()) >= limit
				out = append(out, d.GetResources()...)
				continue
			}
		}
		reply.Errors = append(reply.Errors, fmt.Sprintf("node %d: %v", n, err))
	}
	// A dlmd older than pages returns everything: keep what is after the
	// page's start.
	out = slices.DeleteFunc(out, func(x *dlmv1.Resource) bool {
		return compareResource(x.GetLockspace(), x.GetName(), afterLS, afterName) <= 0
	})
	slices.SortFunc(out, func(x, y *dlmv1.Resource) int {
		return compareResource(x.GetLockspace(), x.GetName(), y.GetLockspace(), y.GetName())
	})
	if limit > 0 {
		// The first limit resources of all nodes are the first of the
		// cluster: each node sent its first limit.
		if len(out) > limit {
			out, more = out[:limit], true
		}
		locks := 0
		for i, res := range out {
			if locks += len(res.GetLocks()); locks > maxPageLocks && i > 0 {
				out, more = out[:i], true
				break
			}
		}
		if more && len(out) > 0 {
			last := out[len(out)-1]
			reply.More, reply.NextAfterLockspace, reply.NextAfterName = true, last.GetLockspace(), last.GetName()
		}
	}
	allowed := map[string]bool{}
	for _, res := range out {
		ok, seen := allowed[res.GetLockspace()]
		if !seen {
			ok = cred.UID == 0
			if !ok {
				a.mu.Lock()
				c, known := a.cache[res.GetLockspace()]
				a.mu.Unlock()
				cfg := c.cfg
				if !known {
					cfg, known = s.lockspaceConfig(ctx, res.GetLockspace())
				}
				ok = known && cfg.Can(cred, lockspace.PermRead) && !otherUsers(res.GetLockspace(), cred.UID)
			}
			allowed[res.GetLockspace()] = ok
		}
		if ok {
			reply.Resources = append(reply.Resources, res)
		}
	}
	if r.GetLockspace() != "" && len(reply.Resources) == 0 && cred.UID != 0 {
		denied := systemDenied(r.GetLockspace(), cred)
		if denied == nil {
			if _, cfg, found, _ := a.find(ctx, r.GetLockspace(), cred); found {
				denied = cfg.CheckAccess(r.GetLockspace(), cred)
			}
		}
		if errors.Is(denied, lockspace.ErrAccess) {
			return nil, status.Error(codes.PermissionDenied, node.WireMessage(denied))
		}
	}
	return reply, nil
}

// Purge releases this node's orphans in a lockspace (all, or one
// process's): each is unlocked at its master as its session would have.
// The caller must be allowed to use the lockspace, and purges only its own
// uid's orphans (root: everyone's).
func (a *API) Purge(ctx context.Context, r *dlmv1.PurgeRequest) (*dlmv1.PurgeReply, error) {
	_, cred, err := credOf(ctx)
	if err != nil {
		return nil, err
	}
	name := r.GetLockspace()
	if err := validFor(name, cred); err != nil {
		return nil, grpcErr(err)
	}
	if r.GetPid() < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "pid %d: want a process id, or 0 for every process", r.GetPid())
	}
	s := a.s
	denied := systemDenied(name, cred)
	eff := name
	if denied == nil {
		eff, _, _, _ = a.find(ctx, name, cred)
	}
	released := 0
	if err := s.call(ctx, func() {
		cfg, known := s.core.LockspaceConfig(eff)
		switch {
		case denied != nil, !known: // a lockspace this node never used has no orphans here
		default:
			if denied = cfg.CheckAccess(name, cred); denied == nil {
				released = s.core.Purge(time.Now(), eff, r.GetPid(), cred.UID)
			}
		}
	}); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if denied != nil {
		return nil, status.Error(codes.PermissionDenied, node.WireMessage(denied))
	}
	return &dlmv1.PurgeReply{Released: uint32(released)}, nil
}

// lockspaceConfig returns a lockspace's config as the loop knows it.
func (s *Server) lockspaceConfig(ctx context.Context, name string) (lockspace.Config, bool) {
	var cfg lockspace.Config
	var ok bool
	_ = s.call(ctx, func() { cfg, ok = s.core.LockspaceConfig(name) })
	return cfg, ok
}
