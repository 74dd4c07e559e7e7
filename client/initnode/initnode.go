// Package initnode is the Go client of initfailover: which node is the
// cluster's init node (the one running its singleton services), moving
// that role, and clusterwide service control (systemd units of any node).
//
//	c, err := initnode.New(ctx)
//	info, err := c.Init(ctx)                          // info.Node is init
//	lines, err := c.Service(ctx, initnode.Restart, "nginx.service", initnode.All())
//
// The caller's identity comes from the socket (SO_PEERCRED): status is
// open to every user, changes (start, stop, ..., Move) are root's.
package initnode

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/openssi/openssi/internal/localapi"
	initfailoverv1 "github.com/openssi/openssi/proto/initfailover/v1"
)

// DefaultSocket is initfailover's local API socket.
const DefaultSocket = "/run/openssi/initfailover.sock"

// SocketEnv names the environment variable that overrides DefaultSocket.
const SocketEnv = "OPENSSI_INITFAILOVER_SOCKET"

// Errors (errors.Is).
var (
	// ErrNotRunning: initfailover does not run on this node.
	ErrNotRunning = errors.New("initfailover is not running on this node")
	// ErrPermission: a change by a caller that is not root.
	ErrPermission = errors.New("permission denied")
	// ErrRefused: a bad unit name or node, or a move that cannot be
	// done now (no init node, a node that is not UP, a move under way).
	ErrRefused = errors.New("refused")
	// ErrUnreachable: another node's initfailover could not be reached.
	ErrUnreachable = errors.New("unreachable")
)

// daemon is openssi-initfailover's local API to this package.
var daemon = localapi.Daemon{Prefix: "initnode", Unit: "openssi-initfailover", Says: "initfailover:",
	NotRunning: ErrNotRunning, Permission: ErrPermission, Refused: ErrRefused, Unavailable: ErrUnreachable,
}

// Option configures New.
type Option func(*options)

type options struct{ socket string }

// WithSocket sets initfailover's socket (default: $OPENSSI_INITFAILOVER_SOCKET,
// else DefaultSocket).
func WithSocket(path string) Option { return func(o *options) { o.socket = path } }

// Client is a connection to the local initfailover. Safe for concurrent
// use.
type Client struct {
	conn   *grpc.ClientConn
	api    initfailoverv1.InitfailoverClient
	socket string
}

// New connects to the local initfailover.
func New(ctx context.Context, opts ...Option) (*Client, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	conn, socket, err := daemon.Dial(ctx, o.socket, SocketEnv, DefaultSocket)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, api: initfailoverv1.NewInitfailoverClient(conn), socket: socket}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Info is what Init reports.
type Info struct {
	// Node is the init node (0: none now).
	Node int `json:"init_node"`
	// ThisNode is the node asked; State its state in the election
	// (booting, waiting, holding, running, stopping), since Since.
	ThisNode int       `json:"this_node"`
	State    string    `json:"state"`
	Since    time.Time `json:"since"`
}

// Init says which node is the init node.
func (c *Client) Init(ctx context.Context) (Info, error) {
	r, err := c.api.Init(ctx, &initfailoverv1.InitRequest{})
	if err != nil {
		return Info{}, c.wrap(err)
	}
	i := Info{Node: int(r.GetInitNode()), ThisNode: int(r.GetThisNode()), State: r.GetState()}
	if ns := r.GetSinceUnixNanos(); ns != 0 {
		i.Since = time.Unix(0, ns)
	}
	return i, nil
}

// Move hands the init role to node and returns the node that had it. It
// returns once the init node has begun stopping its services; node starts
// them when they are stopped.
func (c *Client) Move(ctx context.Context, node int) (from int, err error) {
	if node < 1 {
		return 0, fmt.Errorf("initnode: node %d: %w", node, ErrRefused)
	}
	r, err := c.api.Move(ctx, &initfailoverv1.MoveRequest{Node: uint32(node)})
	if err != nil {
		return 0, c.wrap(err)
	}
	return int(r.GetFrom()), nil
}

// Action is what Service does to a unit, as systemctl's verbs.
type Action int

// The actions.
const (
	Status Action = iota + 1
	Start
	Stop
	Restart
	Enable
	Disable
)

var actionNames = [...]string{Status: "status", Start: "start", Stop: "stop", Restart: "restart", Enable: "enable", Disable: "disable"}

func (a Action) String() string {
	if a >= Status && a <= Disable {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// ParseAction reads an action's name.
func ParseAction(s string) (Action, error) {
	for a := Status; a <= Disable; a++ {
		if actionNames[a] == s {
			return a, nil
		}
	}
	return 0, fmt.Errorf("initnode: unknown action %q: want status, start, stop, restart, enable or disable", s)
}

// Target chooses the nodes of Service.
type Target func(*initfailoverv1.ServiceRequest)

// Nodes acts on the given nodes.
func Nodes(n ...int) Target {
	return func(r *initfailoverv1.ServiceRequest) {
		for _, x := range n {
			r.Nodes = append(r.Nodes, uint32(x))
		}
	}
}

// All acts on every UP node.
func All() Target { return func(r *initfailoverv1.ServiceRequest) { r.All = true } }

// Unit is one node's line of Service: the unit's states after the
// action, or why it failed there (Err).
type Unit struct {
	Node        int       `json:"node"`
	LoadState   string    `json:"load_state,omitempty"`
	ActiveState string    `json:"active_state,omitempty"`
	SubState    string    `json:"sub_state,omitempty"`
	Since       time.Time `json:"since,omitzero"`
	// MainCPID is the cluster pid of the unit's main process (0: none).
	MainCPID int64  `json:"main_cpid,omitempty"`
	Err      string `json:"error,omitempty"`
}

// Service does action on unit on the nodes of target (none: this node),
// one line per node in node order.
func (c *Client) Service(ctx context.Context, action Action, unit string, target ...Target) ([]Unit, error) {
	if action < Status || action > Disable {
		return nil, fmt.Errorf("initnode: %v: %w", action, ErrRefused)
	}
	req := &initfailoverv1.ServiceRequest{Action: initfailoverv1.Action(action), Unit: unit}
	for _, t := range target {
		t(req)
	}
	return c.service(ctx, req)
}

// service sends one Service request and reads its lines.
func (c *Client) service(ctx context.Context, req *initfailoverv1.ServiceRequest) ([]Unit, error) {
	r, err := c.api.Service(ctx, req)
	if err != nil {
		return nil, c.wrap(err)
	}
	var out []Unit
	for _, l := range r.GetLines() {
		u := Unit{Node: int(l.GetNode()), LoadState: l.GetLoadState(), ActiveState: l.GetActiveState(), SubState: l.GetSubState(),
			MainCPID: l.GetMainCpid(), Err: l.GetError()}
		if ns := l.GetSinceUnixNanos(); ns != 0 {
			u.Since = time.Unix(0, ns)
		}
		out = append(out, u)
	}
	return out, nil
}

// wrap turns a status from initfailover into the package's errors.
func (c *Client) wrap(err error) error { return daemon.Wrap(err, c.socket) }
