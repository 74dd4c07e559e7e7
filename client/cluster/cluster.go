// Package cluster is libcluster: the Go client of the cluster membership
// service (clmsd) that applications import. It tells which node this is,
// which nodes exist and in which state, and streams membership events
// (NODEUP, NODEDOWN, NODELEAVE) in epoch order, exactly once, resuming
// after a reconnect without losing or repeating any.
//
// It talks to the local clmsd over its Unix socket
// (/run/openssi/clmsd.sock by default); reading membership needs no
// privilege.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/internal/localapi"
	clmsv1 "github.com/openssi/openssi/proto/clms/v1"
)

// DefaultSocket is clmsd's local API socket.
const DefaultSocket = "/run/openssi/clmsd.sock"

// SocketEnv names the environment variable that overrides DefaultSocket
// when no WithSocket option is given.
const SocketEnv = "OPENSSI_CLMSD_SOCKET"

// State is a node's membership state.
type State string

// The membership states.
const (
	Up      State = "UP"
	Down    State = "DOWN"
	Leaving State = "LEAVING"
)

// EventType is the kind of a membership event.
type EventType string

// The membership events.
const (
	NodeUp    EventType = "NODEUP"
	NodeDown  EventType = "NODEDOWN"
	NodeLeave EventType = "NODELEAVE"
)

// Node is one cluster node as the local clmsd sees it.
type Node struct {
	Number  int       `json:"number"`
	Name    string    `json:"name"`
	Address string    `json:"address"`
	State   State     `json:"state"`
	Since   time.Time `json:"since"`
	// Skew is the node's clock offset relative to this node (positive:
	// ahead); valid when SkewKnown.
	Skew      time.Duration `json:"skew_ns,omitempty"`
	SkewRTT   time.Duration `json:"skew_rtt_ns,omitempty"`
	SkewKnown bool          `json:"skew_known"`
	// SkewWarning is set when |Skew| is above the configured threshold.
	SkewWarning bool `json:"skew_warning"`
}

// View is the membership at one epoch.
type View struct {
	Epoch    uint64 `json:"epoch"`
	ThisNode int    `json:"this_node"`
	Nodes    []Node `json:"nodes"`
	// Quorum is false when this node cannot reach a Consul quorum: it may
	// be cut off from the cluster and the view may be stale.
	Quorum bool `json:"quorum"`
	// QuorumLostSince is when quorum was lost (zero while Quorum).
	QuorumLostSince time.Time     `json:"quorum_lost_since,omitempty"`
	SkewThreshold   time.Duration `json:"skew_threshold_ns"`
}

// Summary renders the view on one line: "epoch 4 quorum=true [1=UP(node1) 2=DOWN(node2)]".
func (v View) Summary() string {
	var parts []string
	for _, m := range v.Nodes {
		parts = append(parts, fmt.Sprintf("%d=%s(%s)", m.Number, m.State, m.Name))
	}
	return fmt.Sprintf("epoch %d quorum=%v [%s]", v.Epoch, v.Quorum, strings.Join(parts, " "))
}

// Event is one membership change.
type Event struct {
	Epoch uint64    `json:"epoch"`
	Type  EventType `json:"type"`
	Node  Node      `json:"node"`
	Time  time.Time `json:"time"`
}

var (
	// ErrNotRunning is returned when clmsd does not answer on its socket.
	ErrNotRunning = errors.New("clmsd is not running on this node")
	// ErrNoSuchNode is returned by Node for an unknown node number.
	ErrNoSuchNode = errors.New("no such node")
	// ErrEventsLost is returned by a watch asked to resume after an epoch
	// whose successors are no longer retained: resynchronise with Nodes.
	ErrEventsLost = errors.New("events after that epoch are no longer retained")
)

// Client is a connection to the local clmsd. It is safe for concurrent use.
type Client struct {
	socket string
	conn   *grpc.ClientConn
	api    clmsv1.MembershipClient
}

type options struct {
	socket string
}

// Option configures New.
type Option func(*options)

// WithSocket connects to clmsd on another socket path.
func WithSocket(path string) Option { return func(o *options) { o.socket = path } }

// New connects to the local clmsd. When it is not running the error wraps
// ErrNotRunning and says how to start it.
func New(ctx context.Context, opts ...Option) (*Client, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	conn, socket, err := localapi.DialSocket(ctx, o.socket, SocketEnv, DefaultSocket)
	if err != nil {
		return nil, notRunning(socket, err)
	}
	return &Client{socket: socket, conn: conn, api: clmsv1.NewMembershipClient(conn)}, nil
}

func notRunning(socket string, err error) error {
	if localapi.IsUnavailable(err) {
		return fmt.Errorf("cluster: %w (no answer on %s): start it with `systemctl start openssi-clmsd`", ErrNotRunning, socket)
	}
	if s, ok := status.FromError(err); ok {
		return fmt.Errorf("cluster: %s", s.Message())
	}
	return fmt.Errorf("cluster: %w", err)
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Socket returns the socket path the client uses.
func (c *Client) Socket() string { return c.socket }

// ThisNode returns the node the client runs on.
func (c *Client) ThisNode(ctx context.Context) (Node, error) {
	r, err := c.api.ThisNode(ctx, &clmsv1.ThisNodeRequest{})
	if err != nil {
		return Node{}, c.wrap(err)
	}
	return nodeFromProto(r.GetNode()), nil
}

// Node returns node n.
func (c *Client) Node(ctx context.Context, n int) (Node, error) {
	if n < 1 {
		return Node{}, fmt.Errorf("cluster: node %d: %w: node numbers start at 1", n, ErrNoSuchNode)
	}
	r, err := c.api.Node(ctx, &clmsv1.NodeRequest{Number: uint32(n)})
	if status.Code(err) == codes.NotFound {
		return Node{}, fmt.Errorf("cluster: node %d: %w: %s", n, ErrNoSuchNode, status.Convert(err).Message())
	}
	if err != nil {
		return Node{}, c.wrap(err)
	}
	return nodeFromProto(r.GetNode()), nil
}

// Nodes returns the current membership view.
func (c *Client) Nodes(ctx context.Context) (View, error) {
	r, err := c.api.Nodes(ctx, &clmsv1.NodesRequest{})
	if err != nil {
		return View{}, c.wrap(err)
	}
	v := View{
		Epoch:         r.GetEpoch(),
		ThisNode:      int(r.GetThisNode()),
		Quorum:        r.GetQuorum(),
		SkewThreshold: time.Duration(r.GetSkewThresholdNanos()),
	}
	if t := r.GetQuorumLostSinceUnixNano(); t != 0 {
		v.QuorumLostSince = time.Unix(0, t)
	}
	for _, n := range r.GetNodes() {
		v.Nodes = append(v.Nodes, nodeFromProto(n))
	}
	return v, nil
}

// Leave makes this node leave the cluster gracefully; clmsd then exits.
// Only root may do it.
func (c *Client) Leave(ctx context.Context) (uint64, error) {
	r, err := c.api.Leave(ctx, &clmsv1.LeaveRequest{})
	if err != nil {
		return 0, c.wrap(err)
	}
	return r.GetEpoch(), nil
}

func (c *Client) wrap(err error) error {
	switch status.Code(err) {
	case codes.Unavailable:
		return notRunning(c.socket, err)
	case codes.PermissionDenied:
		return fmt.Errorf("cluster: permission denied: %s", status.Convert(err).Message())
	case codes.OutOfRange:
		return fmt.Errorf("cluster: %w: %s", ErrEventsLost, status.Convert(err).Message())
	}
	if s, ok := status.FromError(err); ok {
		return fmt.Errorf("cluster: %s", s.Message())
	}
	return fmt.Errorf("cluster: %w", err)
}

// Watcher iterates over membership events, like bufio.Scanner:
//
//	w := c.Watch(ctx, view.Epoch)
//	for w.Next() {
//		e := w.Event()
//	}
//	if err := w.Err(); err != nil { ... }
//
// When clmsd restarts, the watcher reconnects and resumes after the last
// event it delivered, so every event is delivered exactly once, in epoch
// order. Next returns false when ctx ends (Err is then nil) or on an error
// that reconnecting cannot fix (ErrEventsLost).
type Watcher struct {
	c      *Client
	ctx    context.Context
	last   uint64
	stream grpc.ServerStreamingClient[clmsv1.Event]
	cur    Event
	err    error
	// RetryFor bounds how long the watcher keeps reconnecting to a clmsd
	// that is not running before it gives up with ErrNotRunning. Default 1m.
	RetryFor time.Duration
}

// Watch returns a watcher of the events with an epoch greater than
// fromEpoch. Pass the Epoch of a View to see every change after it, or 0
// for all retained history.
func (c *Client) Watch(ctx context.Context, fromEpoch uint64) *Watcher {
	return &Watcher{c: c, ctx: ctx, last: fromEpoch, RetryFor: time.Minute}
}

// Next waits for the next event.
func (w *Watcher) Next() bool {
	var downSince time.Time
	delay := 50 * time.Millisecond
	for w.err == nil && w.ctx.Err() == nil {
		if w.stream == nil {
			s, err := w.c.api.Watch(w.ctx, &clmsv1.WatchRequest{FromEpoch: w.last})
			if err != nil {
				w.fail(err)
				continue
			}
			w.stream = s
		}
		e, err := w.stream.Recv()
		if err != nil {
			w.stream = nil
			if w.ctx.Err() != nil {
				return false
			}
			if status.Code(err) == codes.Unavailable || status.Code(err) == codes.Canceled {
				if downSince.IsZero() {
					downSince = time.Now()
				}
				if time.Since(downSince) > w.RetryFor {
					w.err = notRunning(w.c.socket, err)
					return false
				}
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-w.ctx.Done():
					t.Stop()
				}
				if delay < time.Second {
					delay *= 2
				}
				continue
			}
			w.fail(err)
			continue
		}
		if e.GetEpoch() <= w.last {
			continue // never deliver an event twice
		}
		w.last = e.GetEpoch()
		w.cur = eventFromProto(e)
		return true
	}
	return false
}

func (w *Watcher) fail(err error) {
	if status.Code(err) == codes.Unavailable {
		// Retried by the Recv path on the next loop.
		w.stream = nil
		w.err = nil
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-t.C:
		case <-w.ctx.Done():
			t.Stop()
		}
		return
	}
	w.err = w.c.wrap(err)
}

// Event returns the event Next moved to.
func (w *Watcher) Event() Event { return w.cur }

// Epoch returns the epoch of the last event delivered (or the starting
// epoch): pass it to Watch to resume after a restart of the application.
func (w *Watcher) Epoch() uint64 { return w.last }

// Err returns the error that ended the watch, nil when ctx ended it.
func (w *Watcher) Err() error { return w.err }

var stateFromProto = map[clmsv1.NodeState]State{
	clmsv1.NodeState_NODE_STATE_UP:      Up,
	clmsv1.NodeState_NODE_STATE_DOWN:    Down,
	clmsv1.NodeState_NODE_STATE_LEAVING: Leaving,
}

var eventFromProtoType = map[clmsv1.EventType]EventType{
	clmsv1.EventType_EVENT_TYPE_NODEUP:    NodeUp,
	clmsv1.EventType_EVENT_TYPE_NODEDOWN:  NodeDown,
	clmsv1.EventType_EVENT_TYPE_NODELEAVE: NodeLeave,
}

func nodeFromProto(n *clmsv1.Node) Node {
	out := Node{
		Number:      int(n.GetNumber()),
		Name:        n.GetName(),
		Address:     n.GetAddress(),
		State:       stateFromProto[n.GetState()],
		SkewKnown:   n.GetSkewKnown(),
		Skew:        time.Duration(n.GetSkewNanos()),
		SkewRTT:     time.Duration(n.GetSkewRttNanos()),
		SkewWarning: n.GetSkewWarning(),
	}
	if out.State == "" {
		out.State = State(fmt.Sprintf("UNKNOWN(%d)", n.GetState()))
	}
	if t := n.GetSinceUnixNano(); t != 0 {
		out.Since = time.Unix(0, t)
	}
	return out
}

func eventFromProto(e *clmsv1.Event) Event {
	t := eventFromProtoType[e.GetType()]
	if t == "" {
		t = EventType(fmt.Sprintf("UNKNOWN(%d)", e.GetType()))
	}
	return Event{Epoch: e.GetEpoch(), Type: t, Node: nodeFromProto(e.GetNode()), Time: time.Unix(0, e.GetTimeUnixNano())}
}

// SocketIn returns the clmsd socket path in a run directory.
func SocketIn(runDir string) string { return filepath.Join(runDir, "clmsd.sock") }
