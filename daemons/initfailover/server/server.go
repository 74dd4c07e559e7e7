package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/initfailover/election"
	"github.com/openssi/openssi/daemons/initfailover/initfailoverspec"
	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/rpc"
	initfailoverv1 "github.com/openssi/openssi/proto/initfailover/v1"
	initfailoverpeerv1 "github.com/openssi/openssi/proto/initfailoverpeer/v1"
)

// ServiceName is initfailover's service (the service of its certificates'
// identities, openssi-initfailover.<node>).
var ServiceName = rpc.ServiceName(initfailoverspec.Name)

// Config configures a Server.
type Config struct {
	// Node is this node's number.
	Node uint32
	// Elector is this node's election; nil on a node without systemd,
	// which never becomes init.
	Elector *Elector
	// Systemd is this node's systemd; nil when it has none.
	Systemd Systemd
	// Session opens a lock session with the node's dlmd (to read who
	// holds the init lock).
	Session func(ctx context.Context) (*dlm.Client, error)
	// AskInit, when set, replaces the question to dlmd of who holds the
	// init lock (tests).
	AskInit func(ctx context.Context) (uint32, error)
	// Source holds this node's certificates, for dialling peers.
	Source rpc.Source
	// Lookup returns the address of node n's initfailover.
	Lookup func(ctx context.Context, n uint32) (string, error)
	// NodeName returns the Consul node name holding node number n's
	// claim ("" when unknown).
	NodeName func(ctx context.Context, n uint32) (string, error)
	// DialOptions are added to every dial of a peer (tests).
	DialOptions []rpc.DialOption
	// Timeout bounds one unit action on a node. Default 2 minutes.
	Timeout time.Duration
	Log     logrus.FieldLogger
}

// Server serves the local API and the peer service.
type Server struct {
	cfg Config
	log logrus.FieldLogger

	mu    sync.Mutex
	up    map[uint32]bool
	conns map[uint32]*grpc.ClientConn

	peers *rpc.PeerCheck

	ask initAsk
}

// initCacheFor is how long an answer of dlmd's about the init node is
// reused: Init is open to every user, and each question is a query of
// dlmd's lock table.
const initCacheFor = time.Second

// initAsk asks dlmd who holds the init lock, one question at a time, on
// one session kept open, and remembers the last answer.
type initAsk struct {
	mu   sync.Mutex
	sess *dlm.Client
	at   time.Time
	node uint32
	err  error
}

// New returns a Server. Until Membership is called it believes no node
// but itself UP.
func New(cfg Config) *Server {
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	return &Server{cfg: cfg, log: cfg.Log, peers: &rpc.PeerCheck{Service: ServiceName, Prefix: "initfailover", Peer: "a peer", NodeName: cfg.NodeName, Log: cfg.Log}, up: map[uint32]bool{cfg.Node: true}, conns: map[uint32]*grpc.ClientConn{}}
}

// Membership records that node n is UP or DOWN, for the server and the
// election.
func (s *Server) Membership(n uint32, up bool) {
	s.mu.Lock()
	if up {
		s.up[n] = true
	} else {
		delete(s.up, n)
		if c := s.conns[n]; c != nil {
			delete(s.conns, n)
			c.Close()
		}
	}
	s.mu.Unlock()
	if s.cfg.Elector != nil {
		s.cfg.Elector.SetUp(n, up)
	}
}

func (s *Server) isUp(n uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.up[n]
}

func (s *Server) upNodes() []uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []uint32
	for n := range s.up {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Close closes the connections to peers and the lookup session.
func (s *Server) Close() {
	s.ask.mu.Lock()
	if s.ask.sess != nil {
		s.ask.sess.Close()
		s.ask.sess = nil
	}
	s.ask.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, c := range s.conns {
		c.Close()
		delete(s.conns, n)
	}
}

// holderTimeout bounds one lookup of a number's holder or address.
const holderTimeout = rpc.HolderTimeout

// peer returns a connection to node n's initfailover, holding the
// certificate of the node holding n.
func (s *Server) peer(ctx context.Context, n uint32) (initfailoverpeerv1.InitfailoverPeerClient, error) {
	s.mu.Lock()
	c := s.conns[n]
	s.mu.Unlock()
	if c != nil {
		return initfailoverpeerv1.NewInitfailoverPeerClient(c), nil
	}
	name, err := s.peers.Holder(ctx, n)
	if err != nil {
		return nil, err
	}
	if s.cfg.Lookup == nil {
		return nil, fmt.Errorf("initfailover: no address lookup for node %d", n)
	}
	lctx, cancel := context.WithTimeout(ctx, holderTimeout)
	addr, err := s.cfg.Lookup(lctx, n)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("initfailover: address of node %d's initfailover: %w", n, err)
	}
	c, err = rpc.Dial(ctx, s.cfg.Source, addr, rpc.NodeIdentity(ServiceName, name), s.cfg.DialOptions...)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.conns[n]; old != nil {
		c.Close()
		c = old
	} else {
		s.conns[n] = c
	}
	return initfailoverpeerv1.NewInitfailoverPeerClient(c), nil
}

// InitNode returns the node holding the init role (0: none now): this
// node when its election holds it, else the holder of the init lock in
// dlmd's lock table, as dlmd said it at most initCacheFor ago.
func (s *Server) InitNode(ctx context.Context) (uint32, error) { return s.initNode(ctx, false) }

// initNode is InitNode; fresh asks dlmd even if it answered lately.
func (s *Server) initNode(ctx context.Context, fresh bool) (uint32, error) {
	if el := s.cfg.Elector; el != nil {
		if _, _, is := el.Status(); is {
			return s.cfg.Node, nil
		}
	}
	if s.cfg.AskInit != nil {
		return s.cfg.AskInit(ctx)
	}
	if s.cfg.Session == nil {
		return 0, errors.New("initfailover: no dlmd session to ask")
	}
	a := &s.ask
	a.mu.Lock()
	defer a.mu.Unlock()
	if !fresh && !a.at.IsZero() && time.Since(a.at) < initCacheFor {
		return a.node, a.err
	}
	ctx, cancel := context.WithTimeout(ctx, holderTimeout)
	defer cancel()
	a.node, a.err = s.askInit(ctx)
	if ctx.Err() != nil && a.err != nil {
		// The caller's deadline, not dlmd's answer.
		a.at = time.Time{}
		return a.node, a.err
	}
	a.at = time.Now()
	return a.node, a.err
}

// askInit asks dlmd on the kept session (a new one if it ended) who holds
// the init lock. The caller holds s.ask.mu.
func (s *Server) askInit(ctx context.Context) (uint32, error) {
	a := &s.ask
	if a.sess != nil && a.sess.Err() != nil {
		a.sess.Close()
		a.sess = nil
	}
	if a.sess == nil {
		sess, err := s.cfg.Session(ctx)
		if err != nil {
			return 0, err
		}
		a.sess = sess
	}
	l, err := a.sess.Locks(ctx, dlm.InLockspace(initfailoverspec.Lockspace))
	if err != nil {
		return 0, err
	}
	for _, r := range l.Resources {
		if r.Name != initfailoverspec.Resource {
			continue
		}
		for _, li := range r.Locks {
			if li.State != dlm.Waiting && li.Granted == dlm.EX {
				return uint32(li.Node), nil
			}
		}
	}
	if len(l.Errors) > 0 {
		return 0, fmt.Errorf("initfailover: who is init: %s", strings.Join(l.Errors, "; "))
	}
	return 0, nil
}

// verbs names the actions as ssi service's subcommands.
var verbs = map[initfailoverv1.Action]string{
	initfailoverv1.Action_ACTION_STATUS: "status", initfailoverv1.Action_ACTION_START: "start",
	initfailoverv1.Action_ACTION_STOP: "stop", initfailoverv1.Action_ACTION_RESTART: "restart",
	initfailoverv1.Action_ACTION_ENABLE: "enable", initfailoverv1.Action_ACTION_DISABLE: "disable",
	initfailoverv1.Action_ACTION_ISOLATE: "isolate",
}

// mayAct checks that uid may do action: status is open to all, changes
// are root's (as systemctl's without polkit).
func mayAct(action initfailoverv1.Action, uid uint32) error {
	if _, ok := verbs[action]; !ok {
		return status.Errorf(codes.InvalidArgument, "initfailover: unknown action %d", action)
	}
	if action != initfailoverv1.Action_ACTION_STATUS && uid != 0 {
		if action == initfailoverv1.Action_ACTION_ISOLATE {
			return status.Errorf(codes.PermissionDenied, "initfailover: ssi isolate: only root may isolate a target (uid %d)", uid)
		}
		return status.Errorf(codes.PermissionDenied, "initfailover: ssi service %s: only root may change units (uid %d)", verbs[action], uid)
	}
	return nil
}

// unit carries out an action on a unit of this node (or, asked to check,
// only checks it could) and reports the unit's states.
func (s *Server) unit(ctx context.Context, ask unitAsk) *initfailoverv1.UnitLine {
	action, unit := ask.action, ask.unit
	line := &initfailoverv1.UnitLine{Node: s.cfg.Node}
	timeout := s.cfg.Timeout
	if action == initfailoverv1.Action_ACTION_ISOLATE && !ask.check && ask.timeout > 0 {
		// ssi isolate --timeout: a slow isolate is not cut short.
		timeout = ask.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sd := s.cfg.Systemd
	if sd == nil {
		line.Error = "no systemd on this node (it is not the node's init)"
		return line
	}
	if _, err := sd.Status(ctx, unit); err != nil {
		line.Error = unitError(unit, err)
		return line
	}
	var err error
	switch {
	case action == initfailoverv1.Action_ACTION_ISOLATE:
		// Checked here, on the node, whoever asked: the target's
		// dependencies are this node's.
		err = checkIsolate(ctx, sd, unit, ask.force)
		if err == nil && !ask.check {
			err = sd.Isolate(ctx, unit)
			if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				// systemd goes on with the job: say where to look.
				line.Error = fmt.Sprintf("node %d did not reach %s within %s; check `systemctl list-jobs` there, or raise --timeout", s.cfg.Node, unit, timeout)
				return line
			}
		}
	case ask.check:
	case action == initfailoverv1.Action_ACTION_START:
		err = sd.Start(ctx, unit)
	case action == initfailoverv1.Action_ACTION_STOP:
		err = sd.Stop(ctx, unit)
	case action == initfailoverv1.Action_ACTION_RESTART:
		err = sd.Restart(ctx, unit)
	case action == initfailoverv1.Action_ACTION_ENABLE:
		err = sd.Enable(ctx, unit)
	case action == initfailoverv1.Action_ACTION_DISABLE:
		err = sd.Disable(ctx, unit)
	}
	if err != nil {
		line.Error = unitError(unit, err)
	}
	st, serr := sd.Status(ctx, unit)
	if serr != nil && line.Error == "" {
		line.Error = unitError(unit, serr)
	}
	line.LoadState, line.ActiveState, line.SubState = st.LoadState, st.ActiveState, st.SubState
	if !st.Since.IsZero() {
		line.SinceUnixNanos = st.Since.UnixNano()
	}
	if st.MainPID > 0 {
		if c, err := cpid.Make(s.cfg.Node, int32(st.MainPID)); err == nil {
			line.MainCpid = int64(c)
		}
	}
	return line
}

func unitError(unit string, err error) string {
	if errors.Is(err, ErrNoUnit) {
		return fmt.Sprintf("unit %s not found", unit)
	}
	return err.Error()
}

// moveError maps the election's refusals to statuses.
func moveError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, election.ErrNotInit), errors.Is(err, election.ErrNotUp), errors.Is(err, election.ErrBusy):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

// callerUID returns the local caller's uid from the socket.
func callerUID(ctx context.Context) (uint32, error) {
	c, ok := localapi.CallerFrom(ctx)
	if !ok {
		return 0, status.Error(codes.Unauthenticated, "initfailover: caller credentials unavailable")
	}
	return c.UID, nil
}
