// Package dlm is the Go client of OpenSSI's distributed lock manager
// (dlmd): VMS-style locks on named resources in named lockspaces, shared
// by every node of the cluster.
//
// A Client is one lock session with the local dlmd: the locks it takes
// belong to it, and they are released (Persistent ones kept as orphans)
// when the session ends — Close, or the process exiting or crashing. Lock
// blocks until the lock is granted, refused or ctx ends; blocking ASTs
// (another client wants a mode your lock blocks) arrive on Blocking.
//
//	c, err := dlm.New(ctx)
//	l, err := c.Lock(ctx, "myapp", "config", dlm.EX, dlm.ValueBlock())
//	v, valid := l.Value()     // the 32-byte lock value block
//	err = l.Unlock(ctx, dlm.WriteValue(v))
//
// Lockspaces are created on first use (mode 0660, owned by the creating
// user and group) or with CreateLockspace, and have an owner, a group and
// a mode as files do (see LockspaceInfo). A name root uses is shared; a
// name another user uses is its own lockspace, unless a shared one of that
// name existed first, so no user can take a name from another. Root may
// use every lockspace, and those whose names start with "openssi." are the
// cluster daemons' own, for root only.
package dlm

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/internal/localapi"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// DefaultSocket is dlmd's local API socket.
const DefaultSocket = "/run/openssi/dlmd.sock"

// SocketEnv names the environment variable that overrides DefaultSocket
// when no WithSocket option is given.
const SocketEnv = "OPENSSI_DLMD_SOCKET"

// Mode is a lock mode.
type Mode int

// The six lock modes, weakest first.
const (
	NL Mode = iota + 1 // null: no access; keeps the value block alive
	CR                 // concurrent read
	CW                 // concurrent write
	PR                 // protected read
	PW                 // protected write
	EX                 // exclusive
)

var modeNames = [...]string{NL: "NL", CR: "CR", CW: "CW", PR: "PR", PW: "PW", EX: "EX"}

// String returns NL, CR, CW, PR, PW or EX.
func (m Mode) String() string {
	if m >= NL && m <= EX {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// proto and modeOf convert between Mode and the wire's mode, which has the
// same numbers (TestWireEnums checks it value by value).
func (m Mode) proto() dlmv1.Mode { return dlmv1.Mode(m) }

func modeOf(m dlmv1.Mode) Mode { return Mode(m) }

// ParseMode decodes a mode name (NL, CR, CW, PR, PW, EX; any case).
func ParseMode(s string) (Mode, error) {
	for m := NL; m <= EX; m++ {
		if equalFold(modeNames[m], s) {
			return m, nil
		}
	}
	return 0, fmt.Errorf("dlm: unknown lock mode %q: want NL, CR, CW, PR, PW or EX", s)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// ValueLen is the size of a lock value block.
const ValueLen = 32

// Value is a lock value block.
type Value [ValueLen]byte

// Errors callers test for (errors.Is). The library's errors wrap them
// with the package prefix, the operation and dlmd's detail, as in
// "dlm: lock x/r: permission denied: lockspace "x" belongs to uid 0 gid 0,
// caller is uid 1000".
var (
	ErrNotRunning  = errors.New("dlmd is not running on this node")
	ErrWouldBlock  = errors.New("request would block")
	ErrTimeout     = errors.New("request timed out")
	ErrDeadlock    = errors.New("deadlock")
	ErrCancelled   = errors.New("request cancelled")
	ErrPermission  = errors.New("permission denied")
	ErrInvalid     = errors.New("invalid argument")
	ErrUnknownLock = errors.New("no such lock")
	ErrBusy        = errors.New("lock busy")
	ErrNotPending  = errors.New("no request pending")
	// ErrLimit: dlmd refused the request because a limit of its
	// configuration was reached (the message names it, as in "too many
	// locks: session holds 10000 (dlmd.max_locks_per_session)"); the
	// session goes on. Release locks, or wait for answers, and retry.
	// New fails with it when the uid has too many sessions open.
	ErrLimit = errors.New("limit reached")
	// ErrClosed: the session ended (Close, or dlmd went away: its locks
	// are gone).
	ErrClosed = errors.New("session closed")
	// ErrLost: the node lost contact with a majority of the cluster for
	// longer than the lease (dlmd.lease) and dropped its locks: the other
	// nodes may have granted them since. Stop using what they protected;
	// open a new session to lock again.
	ErrLost = errors.New("locks lost: this node was cut off from the cluster")
)

var statusErr = map[dlmv1.Status]error{
	dlmv1.Status_STATUS_WOULD_BLOCK:   ErrWouldBlock,
	dlmv1.Status_STATUS_TIMEOUT:       ErrTimeout,
	dlmv1.Status_STATUS_DEADLOCK:      ErrDeadlock,
	dlmv1.Status_STATUS_CANCELLED:     ErrCancelled,
	dlmv1.Status_STATUS_ACCESS:        ErrPermission,
	dlmv1.Status_STATUS_NAME_TOO_LONG: fmt.Errorf("%w: name too long", ErrInvalid),
	dlmv1.Status_STATUS_INVALID:       ErrInvalid,
	dlmv1.Status_STATUS_UNKNOWN_LOCK:  ErrUnknownLock,
	dlmv1.Status_STATUS_BUSY:          ErrBusy,
	dlmv1.Status_STATUS_NOT_PENDING:   ErrNotPending,
	dlmv1.Status_STATUS_LIMIT:         ErrLimit,
}

func errOf(st dlmv1.Status, msg string) error {
	if st == dlmv1.Status_STATUS_OK {
		return nil
	}
	if e := statusErr[st]; e != nil {
		if msg == "" {
			return e
		}
		return fmt.Errorf("%w: %s", e, msg)
	}
	if msg == "" {
		return errors.New(st.String())
	}
	return fmt.Errorf("%s: %s", st, msg)
}

// Flag bits, as dlmd's core numbers them.
const (
	flagNoQueue    = 1
	flagValBlk     = 2
	flagQueCvt     = 4
	flagPersistent = 8
	flagInvalidate = 32
)

// Option modifies a Lock, Convert or Unlock request.
type Option func(*request)

type request struct {
	flags   uint32
	timeout time.Duration
	value   *Value
}

// NoQueue fails the request with ErrWouldBlock instead of waiting.
func NoQueue() Option { return func(r *request) { r.flags |= flagNoQueue } }

// ValueBlock reads the value block on a grant in PR, PW or EX (see
// Lock.Value).
func ValueBlock() Option { return func(r *request) { r.flags |= flagValBlk } }

// QueueConversion queues an up-conversion behind the conversions already
// waiting even when it could be granted (VMS QUECVT). Convert only.
func QueueConversion() Option { return func(r *request) { r.flags |= flagQueCvt } }

// Persistent keeps the lock granted (as an orphan) when the session ends.
// Lock only. Client.Purge releases orphans.
func Persistent() Option { return func(r *request) { r.flags |= flagPersistent } }

// Timeout makes dlmd refuse the request with ErrTimeout if it waits
// longer than d.
func Timeout(d time.Duration) Option { return func(r *request) { r.timeout = d } }

// WriteValue writes v to the value block on a down-conversion or unlock
// from PW or EX.
func WriteValue(v Value) Option {
	return func(r *request) { r.flags |= flagValBlk; r.value = &v }
}

// InvalidateValue marks the value block not valid on a down-conversion or
// unlock from PW or EX.
func InvalidateValue() Option { return func(r *request) { r.flags |= flagInvalidate } }

// Blocking is a blocking AST: Lock blocks a request for Mode; the holder
// should down-convert or unlock when it can.
type Blocking struct {
	Lock *Lock
	Mode Mode
}

// Client is one lock session with the local dlmd. It is safe for
// concurrent use.
type Client struct {
	conn   *grpc.ClientConn
	stream grpc.BidiStreamingClient[dlmv1.ClientMessage, dlmv1.ServerMessage]
	cancel context.CancelFunc
	node   uint32
	id     uint64
	bast   chan Blocking

	sendMu sync.Mutex
	mu     sync.Mutex
	tag    uint64
	wait   map[uint64]waiter
	locks  map[uint64]*Lock
	err    error
	done   chan struct{}
}

type options struct{ socket string }

// ClientOption configures New.
type ClientOption func(*options)

// WithSocket connects to dlmd on another socket path.
func WithSocket(path string) ClientOption { return func(o *options) { o.socket = path } }

// New opens a lock session with the local dlmd. When dlmd is not running
// the error wraps ErrNotRunning; when the caller's uid has
// dlmd.max_sessions_per_uid sessions open on the node already, ErrLimit.
func New(ctx context.Context, opts ...ClientOption) (*Client, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	conn, socket, err := localapi.DialSocket(ctx, o.socket, SocketEnv, DefaultSocket)
	if err != nil {
		if localapi.IsUnavailable(err) {
			return nil, fmt.Errorf("dlm: %w (no answer on %s): start it with `systemctl start openssi-dlmd`", ErrNotRunning, socket)
		}
		return nil, fmt.Errorf("dlm: %w", err)
	}
	sctx, cancel := context.WithCancel(context.Background())
	st, err := dlmv1.NewDlmClient(conn).Session(sctx)
	if err == nil {
		var first *dlmv1.ServerMessage
		if first, err = recvCtx(ctx, st); err == nil {
			h := first.GetHello()
			if h == nil {
				err = errors.New("session did not start with a hello")
			} else {
				c := &Client{conn: conn, stream: st, cancel: cancel, node: h.GetNode(), id: h.GetClient(),
					bast: make(chan Blocking, 256), wait: map[uint64]waiter{}, locks: map[uint64]*Lock{},
					done: make(chan struct{})}
				go c.recv()
				return c, nil
			}
		}
	}
	cancel()
	conn.Close()
	if localapi.IsUnavailable(err) || status.Code(err) == codes.Unavailable {
		return nil, fmt.Errorf("dlm: %w: %v", ErrNotRunning, err)
	}
	if status.Code(err) == codes.ResourceExhausted {
		// dlmd.max_sessions_per_uid: the message names it.
		return nil, fmt.Errorf("dlm: open session: %w: %s", ErrLimit, status.Convert(err).Message())
	}
	return nil, fmt.Errorf("dlm: open session: %w", err)
}

func recvCtx(ctx context.Context, st grpc.BidiStreamingClient[dlmv1.ClientMessage, dlmv1.ServerMessage]) (*dlmv1.ServerMessage, error) {
	type res struct {
		m   *dlmv1.ServerMessage
		err error
	}
	ch := make(chan res, 1)
	go func() { m, err := st.Recv(); ch <- res{m, err} }()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Node returns the node number of the session; Owner its owner id there:
// the session's locks show as node:pid in `ssi locks`.
func (c *Client) Node() int { return int(c.node) }

// Owner returns the session's owner id on its node.
func (c *Client) Owner() uint64 { return c.id }

// Done is closed when the session has ended: Close, dlmd stopped, or the
// node was fenced. Every lock of the session is gone then; Err says why.
// A program holding locks across long work should watch it.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the session ended (ErrLost when the node was fenced,
// ErrClosed otherwise), or nil while it lasts.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		return nil
	}
	return fmt.Errorf("dlm: %w", c.err)
}

// Blocking returns the channel of blocking ASTs of the session's locks.
// It is buffered; ASTs that find it full are dropped (they are hints: a
// holder that ignores them only delays the waiter).
func (c *Client) Blocking() <-chan Blocking { return c.bast }

// closeWait bounds how long Close waits for dlmd to take the requests
// already sent.
const closeWait = 2 * time.Second

// Close ends the session: dlmd first takes every request already sent (an
// Unlock with WriteValue just before Close is not lost), then every lock of
// the session is released at once (Persistent ones stay as orphans).
func (c *Client) Close() error {
	c.sendMu.Lock()
	_ = c.stream.CloseSend()
	c.sendMu.Unlock()
	t := time.NewTimer(closeWait)
	select {
	case <-c.done:
	case <-t.C:
	}
	t.Stop()
	c.cancel()
	<-c.done
	return c.conn.Close()
}

// Purge releases the orphans this node holds in lockspace: the Persistent
// locks left granted when their session ended, of the process pid (as the
// ended session's process reported it), or of every process with pid 0.
// It returns how many it released; each is unlocked at its master as an
// Unlock would (the value block is not written). The caller must be
// allowed to use the lockspace (ErrPermission otherwise), and releases
// only the orphans of its own uid (root: everyone's).
func (c *Client) Purge(ctx context.Context, lockspace string, pid int) (int, error) {
	r, err := dlmv1.NewDlmClient(c.conn).Purge(ctx, &dlmv1.PurgeRequest{Lockspace: lockspace, Pid: int32(pid)})
	if err != nil {
		return 0, apiErr("purge "+showName(lockspace), err)
	}
	return int(r.GetReleased()), nil
}

func (c *Client) recv() {
	defer close(c.done)
	for {
		m, err := c.stream.Recv()
		if err != nil {
			c.mu.Lock()
			c.err = ErrClosed
			if status.Code(err) == codes.Aborted {
				c.err = fmt.Errorf("%w: %s", ErrLost, status.Convert(err).Message())
			}
			for _, w := range c.wait {
				close(w.ch)
			}
			c.wait = map[uint64]waiter{}
			for _, l := range c.locks {
				l.fail(c.err)
			}
			c.mu.Unlock()
			return
		}
		switch x := m.Msg.(type) {
		case *dlmv1.ServerMessage_Reply:
			c.mu.Lock()
			w, ok := c.wait[x.Reply.GetTag()]
			delete(c.wait, x.Reply.GetTag())
			if ok && w.lock != nil && x.Reply.GetStatus() == dlmv1.Status_STATUS_OK {
				// File the new lock before its completion can arrive.
				w.lock.id = x.Reply.GetLockId()
				c.locks[w.lock.id] = w.lock
			}
			var l *Lock
			if cm := x.Reply.GetCompletion(); cm != nil {
				l = c.locks[cm.GetLockId()]
			}
			c.mu.Unlock()
			if l != nil {
				// Decided at once: the completion came with the reply.
				l.complete(x.Reply.GetCompletion())
			}
			if ok && w.abandoned && w.lock != nil && x.Reply.GetStatus() == dlmv1.Status_STATUS_OK {
				go w.lock.drop()
			}
			if ok {
				w.ch <- x.Reply
			}
		case *dlmv1.ServerMessage_Completion:
			c.mu.Lock()
			l := c.locks[x.Completion.GetLockId()]
			c.mu.Unlock()
			if l != nil {
				l.complete(x.Completion)
			}
		case *dlmv1.ServerMessage_Blocking:
			c.mu.Lock()
			l := c.locks[x.Blocking.GetLockId()]
			c.mu.Unlock()
			if l != nil {
				select {
				case c.bast <- Blocking{Lock: l, Mode: modeOf(x.Blocking.GetMode())}:
				default:
				}
			}
		}
	}
}

type waiter struct {
	ch   chan *dlmv1.Reply
	lock *Lock // a new lock, filed when the reply names it
	// abandoned: the caller gave up before the reply; a new lock it
	// names is cancelled (or released, if granted) when it comes.
	abandoned bool
}

// roundTrip sends a request and waits for its reply. A new lock l is filed
// under the id the reply gives it before any completion is read.
func (c *Client) roundTrip(ctx context.Context, m *dlmv1.ClientMessage, l ...*Lock) (*dlmv1.Reply, error) {
	w := waiter{ch: make(chan *dlmv1.Reply, 1)}
	if len(l) > 0 {
		w.lock = l[0]
	}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	c.tag++
	m.Tag = c.tag
	c.wait[m.Tag] = w
	c.mu.Unlock()
	c.sendMu.Lock()
	err := c.stream.Send(m)
	c.sendMu.Unlock()
	if err != nil {
		return nil, c.closedErr()
	}
	select {
	case r, ok := <-w.ch:
		if !ok {
			return nil, c.closedErr()
		}
		return r, nil
	case <-ctx.Done():
		// The reply will still come; nobody waits for it.
		c.mu.Lock()
		if w, ok := c.wait[m.Tag]; ok {
			w.abandoned = true
			c.wait[m.Tag] = w
		}
		c.mu.Unlock()
		return nil, ctx.Err()
	}
}

// drop gets rid of a lock whose Lock call gave up before dlmd named it:
// the request is cancelled, or the lock released if it was granted.
func (l *Lock) drop() {
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if r, _ := l.await(gone); r.granted {
		_ = l.Unlock(context.Background())
		return
	}
	l.c.forget(l)
}

// post sends a request nobody waits for (dlmd answers it only with a
// failure, which recv drops: no waiter has its tag).
func (c *Client) post(m *dlmv1.ClientMessage) error {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return c.err
	}
	c.tag++
	m.Tag = c.tag
	c.mu.Unlock()
	c.sendMu.Lock()
	err := c.stream.Send(m)
	c.sendMu.Unlock()
	if err != nil {
		return c.closedErr()
	}
	return nil
}

// closedErr is why requests fail once the session is over.
func (c *Client) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	return ErrClosed
}

// Lock is a lock held (or requested) by a session.
type Lock struct {
	c         *Client
	id        uint64
	lockspace string
	resource  string

	mu       sync.Mutex
	mode     Mode
	token    uint64
	value    Value
	valid    bool
	hasVal   bool
	done     chan result // the completion of the pending request
	dropped  bool
	unlocked bool
}

type result struct {
	granted bool
	mode    Mode
	token   uint64
	held    bool
	err     error
}

// MaxResourceName is the longest resource name dlmd takes, in bytes.
const MaxResourceName = 64

// checkNames refuses, before anything is sent, the names dlmd would
// refuse or the session could not carry: a resource name is 1 to
// MaxResourceName bytes of any value; a lockspace name travels as a
// protobuf string, which must be UTF-8 (dlmd checks the rest of its
// form).
func checkNames(lockspace, resource string) error {
	var why string
	switch {
	case len(resource) == 0:
		why = fmt.Sprintf("resource name is empty: want 1 to %d bytes", MaxResourceName)
	case len(resource) > MaxResourceName:
		why = fmt.Sprintf("resource name is %d bytes long: want at most %d", len(resource), MaxResourceName)
	case !utf8.ValidString(lockspace):
		why = "lockspace name is not valid UTF-8"
	default:
		return nil
	}
	return fmt.Errorf("dlm: lock %s: %w: %s", lockName(lockspace, resource), ErrInvalid, why)
}

// lockName is lockspace/resource as errors show it (see showName).
func lockName(lockspace, resource string) string {
	return showName(lockspace) + "/" + showName(resource)
}

// showName returns a name as errors show it: as it is when it is
// printable UTF-8 with nothing to escape, else Go-quoted, so that a name
// (any bytes) keeps an error on one line and sends no terminal escape; a
// name far past MaxResourceName is cut.
func showName(s string) string {
	cut := ""
	if len(s) > 2*MaxResourceName {
		s, cut = s[:2*MaxResourceName], "..."
	}
	if q := strconv.Quote(s); q[1:len(q)-1] != s {
		return q + cut
	}
	return s + cut
}

// Lock requests a lock on resource (1 to MaxResourceName bytes, any
// values: a Go string may hold any bytes) in lockspace, in mode, and
// waits until it is granted. A resource name that is empty or too long,
// or a lockspace name that is not UTF-8, fails with ErrInvalid before
// anything is sent (the session and its locks stay). It fails with ErrWouldBlock (NoQueue),
// ErrTimeout (Timeout), ErrDeadlock (the request was chosen to break a
// deadlock), ErrPermission (the lockspace is not the caller's), or ctx's
// error: the request is then cancelled (and the lock released if the
// grant won the race).
func (c *Client) Lock(ctx context.Context, lockspace, resource string, mode Mode, opts ...Option) (*Lock, error) {
	if err := checkNames(lockspace, resource); err != nil {
		return nil, err
	}
	var r request
	for _, o := range opts {
		o(&r)
	}
	l := &Lock{c: c, lockspace: lockspace, resource: resource, done: make(chan result, 1)}
	rep, err := c.roundTrip(ctx, &dlmv1.ClientMessage{Op: &dlmv1.ClientMessage_Lock{Lock: &dlmv1.LockRequest{
		Lockspace: lockspace, Resource: []byte(resource), Mode: mode.proto(), Flags: r.flags, TimeoutNanos: int64(r.timeout),
		CompletionInReply: true}}}, l)
	if err != nil {
		return nil, fmt.Errorf("dlm: lock %s: %w", lockName(lockspace, resource), err)
	}
	if err := errOf(rep.GetStatus(), rep.GetMessage()); err != nil {
		return nil, fmt.Errorf("dlm: lock %s: %w", lockName(lockspace, resource), err)
	}
	res, err := l.await(ctx)
	if err != nil {
		return nil, fmt.Errorf("dlm: lock %s: %w", lockName(lockspace, resource), err)
	}
	if !res.granted {
		c.forget(l)
		return nil, fmt.Errorf("dlm: lock %s: %w", lockName(lockspace, resource), res.err)
	}
	return l, nil
}

func (c *Client) forget(l *Lock) {
	c.mu.Lock()
	delete(c.locks, l.id)
	c.mu.Unlock()
}

// await waits for the completion of l's pending request; when ctx ends
// first it cancels the request and returns ctx's error once the request
// is over (a grant that won the race is unlocked).
func (l *Lock) await(ctx context.Context) (result, error) {
	select {
	case r := <-l.done:
		return l.settle(r), nil
	case <-ctx.Done():
	}
	bg, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = l.c.roundTrip(bg, &dlmv1.ClientMessage{Op: &dlmv1.ClientMessage_Cancel{Cancel: &dlmv1.CancelRequest{LockId: l.id}}})
	select {
	case r := <-l.done:
		r = l.settle(r)
		if r.granted {
			return r, nil // a grant is a grant: the caller decides (Lock keeps it, Convert reports it)
		}
	case <-bg.Done():
	}
	return result{}, ctx.Err()
}

func (l *Lock) settle(r result) result {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.granted || r.held {
		l.mode = r.mode
	}
	if r.granted {
		l.token = r.token
	}
	return r
}

func (l *Lock) complete(m *dlmv1.Completion) {
	r := result{granted: m.GetGranted(), mode: modeOf(m.GetMode()), token: m.GetToken(), held: m.GetHeld()}
	if !r.granted {
		r.err = errOf(m.GetStatus(), "")
	}
	l.mu.Lock()
	if m.GetHasLvb() {
		copy(l.value[:], m.GetLvb())
		l.valid, l.hasVal = m.GetLvbValid(), true
	}
	l.mu.Unlock()
	select {
	case l.done <- r:
	default:
	}
}

func (l *Lock) fail(err error) {
	l.mu.Lock()
	l.dropped = true
	l.mu.Unlock()
	select {
	case l.done <- result{err: err}:
	default:
	}
}

// Lockspace returns the lock's lockspace.
func (l *Lock) Lockspace() string { return l.lockspace }

// Resource returns the lock's resource name.
func (l *Lock) Resource() string { return l.resource }

// ID returns the lock's id on its node.
func (l *Lock) ID() uint64 { return l.id }

// Mode returns the granted mode.
func (l *Lock) Mode() Mode {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mode
}

// Token returns the fencing token of the lock's grant in PW or EX, and 0
// when it holds a weaker mode. Tokens grow with every grant of PW or EX
// on the resource (a new lock or a conversion up), across the cluster and
// across a change of master, and a conversion down from EX to PW keeps
// the token. Pass it with every write to a storage system that remembers
// the highest token it has seen and refuses lower ones: a holder paused
// past its lease, whose lock was given to another, is then refused.
func (l *Lock) Token() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.token
}

// Value returns the value block as the last grant with ValueBlock read it
// (or this lock last wrote it), and whether it is valid: not valid means a
// holder in PW or EX died or invalidated it, and the protected data must be
// rebuilt. ok is false when the lock never read it.
func (l *Lock) Value() (v Value, valid, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.value, l.valid, l.hasVal
}

// Convert changes the lock's mode and waits for the grant. A failed
// conversion leaves the lock in its old mode. Options: NoQueue,
// QueueConversion, Timeout, ValueBlock (read), WriteValue and
// InvalidateValue (on a down-conversion from PW or EX).
func (l *Lock) Convert(ctx context.Context, mode Mode, opts ...Option) error {
	var r request
	for _, o := range opts {
		o(&r)
	}
	msg := &dlmv1.ConvertRequest{LockId: l.id, Mode: mode.proto(), Flags: r.flags, TimeoutNanos: int64(r.timeout),
		CompletionInReply: true}
	if r.value != nil {
		msg.Lvb = r.value[:]
	}
	select { // a stale completion cannot be pending: requests are one at a time
	case <-l.done:
	default:
	}
	rep, err := l.c.roundTrip(ctx, &dlmv1.ClientMessage{Op: &dlmv1.ClientMessage_Convert{Convert: msg}})
	if err != nil {
		return fmt.Errorf("dlm: convert %s: %w", lockName(l.lockspace, l.resource), err)
	}
	if err := errOf(rep.GetStatus(), rep.GetMessage()); err != nil {
		return fmt.Errorf("dlm: convert %s: %w", lockName(l.lockspace, l.resource), err)
	}
	if r.value != nil && r.flags&flagInvalidate == 0 {
		l.mu.Lock()
		if l.mode == PW || l.mode == EX {
			l.value, l.valid, l.hasVal = *r.value, true, true
		}
		l.mu.Unlock()
	}
	res, err := l.await(ctx)
	if err != nil {
		return fmt.Errorf("dlm: convert %s: %w", lockName(l.lockspace, l.resource), err)
	}
	if !res.granted {
		return fmt.Errorf("dlm: convert %s to %v: %w", lockName(l.lockspace, l.resource), mode, res.err)
	}
	return nil
}

// Unlock releases the lock (a pending conversion is cancelled first).
// Options: WriteValue, InvalidateValue (from PW or EX).
//
// Unlock does not wait for dlmd's answer, as a DLM unlock is asynchronous:
// dlmd handles a session's requests in order, so whatever the session asks
// next comes after the release, and the lock is free for other sessions as
// soon as its master has the request. It fails when the lock was already
// unlocked or the session is closed (its locks are then released anyway);
// ctx is not waited on.
func (l *Lock) Unlock(ctx context.Context, opts ...Option) error {
	var r request
	for _, o := range opts {
		o(&r)
	}
	msg := &dlmv1.UnlockRequest{LockId: l.id, Flags: r.flags &^ (flagNoQueue | flagQueCvt | flagPersistent), NoReply: true}
	if r.value != nil {
		msg.Lvb = r.value[:]
	}
	l.mu.Lock()
	unlocked := l.unlocked
	l.unlocked = true
	l.mu.Unlock()
	if unlocked {
		return fmt.Errorf("dlm: unlock %s: already unlocked: %w", lockName(l.lockspace, l.resource), ErrUnknownLock)
	}
	l.c.forget(l)
	if err := l.c.post(&dlmv1.ClientMessage{Op: &dlmv1.ClientMessage_Unlock{Unlock: msg}}); err != nil {
		return fmt.Errorf("dlm: unlock %s: %w", lockName(l.lockspace, l.resource), err)
	}
	return nil
}

// Ping makes a round trip to the local dlmd through the session: it
// returns once dlmd's event loop, the one that keeps the session's locks
// and this node's lease, has answered, without asking any other node. A
// session whose dlmd does not answer Ping within its lease may have lost
// its locks without being told (a frozen dlmd is fenced by its peers but
// cannot tell its clients): a holder that must not outlive its lock
// watches it (initfailover's Elector does). It is a Cancel of lock id 0,
// which no lock ever has: dlmd answers it at once, locally, with
// ErrUnknownLock, and every dlmd version understands it.
func (c *Client) Ping(ctx context.Context) error {
	r, err := c.roundTrip(ctx, &dlmv1.ClientMessage{Op: &dlmv1.ClientMessage_Cancel{Cancel: &dlmv1.CancelRequest{LockId: 0}}})
	if err != nil {
		return err
	}
	if err := errOf(r.GetStatus(), r.GetMessage()); err != nil && !errors.Is(err, ErrUnknownLock) {
		return fmt.Errorf("dlm: ping: %w", err)
	}
	return nil
}
