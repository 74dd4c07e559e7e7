// Package keepalive is the Go client of openssi-keepalived: the monitored
// applications, where each runs, and registering, moving and removing
// them.
//
//	c, err := keepalive.New(ctx)
//	err = c.Add(ctx, keepalive.App{Name: "web", Command: []string{"/usr/bin/python3", "-m", "http.server"}, Check: "tcp:8000"}, false)
//	apps, errs, err := c.List(ctx, "")
//
// The caller's identity comes from the socket (SO_PEERCRED): listing is
// open to every user, changes are root's.
package keepalive

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/openssi/openssi/internal/localapi"
	keepalivev1 "github.com/openssi/openssi/proto/keepalive/v1"
)

// DefaultSocket is openssi-keepalived's local API socket.
const DefaultSocket = "/run/openssi/keepalived.sock"

// SocketEnv names the environment variable that overrides DefaultSocket.
const SocketEnv = "OPENSSI_KEEPALIVED_SOCKET"

// Errors (errors.Is).
var (
	// ErrNotRunning: openssi-keepalived does not run on this node.
	ErrNotRunning = errors.New("openssi-keepalived is not running on this node")
	// ErrPermission: a change by a caller that is not root.
	ErrPermission = errors.New("permission denied")
	// ErrRefused: a bad declaration, an unknown application or node, a
	// move that cannot be done now.
	ErrRefused = errors.New("refused")
	// ErrUnavailable: Consul could not be reached.
	ErrUnavailable = errors.New("unavailable")
)

// daemon is openssi-keepalived's local API to this package.
var daemon = localapi.Daemon{Prefix: "keepalive", Unit: "openssi-keepalived", Says: "keepalived:",
	NotRunning: ErrNotRunning, Permission: ErrPermission, Refused: ErrRefused, Unavailable: ErrUnavailable,
	RefusedToo: []codes.Code{codes.AlreadyExists, codes.Aborted},
}

// Option configures New.
type Option func(*options)

type options struct{ socket string }

// WithSocket sets the socket (default: $OPENSSI_KEEPALIVED_SOCKET, else
// DefaultSocket).
func WithSocket(path string) Option { return func(o *options) { o.socket = path } }

// Client is a connection to the local openssi-keepalived. Safe for
// concurrent use.
type Client struct {
	conn   *grpc.ClientConn
	api    keepalivev1.KeepaliveClient
	socket string
}

// New connects to the local openssi-keepalived.
func New(ctx context.Context, opts ...Option) (*Client, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	conn, socket, err := daemon.Dial(ctx, o.socket, SocketEnv, DefaultSocket)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, api: keepalivev1.NewKeepaliveClient(conn), socket: socket}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// App declares a monitored application (zero fields take their
// defaults: user root, placement last_node, 3 retries within 1m, checks
// every 2s).
type App struct {
	Name          string        `json:"name"`
	Command       []string      `json:"command"`
	User          string        `json:"user,omitempty"`
	Primary       int           `json:"primary,omitempty"`
	Backups       []int         `json:"backups,omitempty"`
	Placement     string        `json:"placement,omitempty"`
	Retries       int           `json:"retries,omitempty"`
	Within        time.Duration `json:"within,omitempty"`
	Check         string        `json:"check,omitempty"`
	CheckInterval time.Duration `json:"check_interval,omitempty"`
}

// Status is an application and where it runs.
type Status struct {
	App App `json:"app"`
	// Source is its declaration file, or "consul" (ssi keepalive add).
	Source string `json:"source"`
	// Node runs it (0: none).
	Node     int       `json:"node"`
	State    string    `json:"state"`
	Since    time.Time `json:"since,omitzero"`
	Restarts int       `json:"restarts"`
	Message  string    `json:"message,omitempty"`
	GaveUp   []int     `json:"gave_up,omitempty"`
}

func toProto(a App) *keepalivev1.App {
	p := &keepalivev1.App{Name: a.Name, Command: a.Command, User: a.User, Primary: uint32(max(a.Primary, 0)), Placement: a.Placement,
		Retries: int32(a.Retries), WithinNanos: int64(a.Within), Check: a.Check, CheckIntervalNanos: int64(a.CheckInterval)}
	for _, b := range a.Backups {
		p.Backups = append(p.Backups, uint32(max(b, 0)))
	}
	return p
}

func fromProto(p *keepalivev1.App) App {
	a := App{Name: p.GetName(), Command: p.GetCommand(), User: p.GetUser(), Primary: int(p.GetPrimary()), Placement: p.GetPlacement(),
		Retries: int(p.GetRetries()), Within: time.Duration(p.GetWithinNanos()), Check: p.GetCheck(), CheckInterval: time.Duration(p.GetCheckIntervalNanos())}
	for _, b := range p.GetBackups() {
		a.Backups = append(a.Backups, int(b))
	}
	return a
}

// Add registers app in Consul KV (replace: over a registration of the
// same name).
func (c *Client) Add(ctx context.Context, app App, replace bool) error {
	_, err := c.api.Add(ctx, &keepalivev1.AddRequest{App: toProto(app), Replace: replace})
	return c.wrap(err)
}

// Remove stops and forgets a registered application.
func (c *Client) Remove(ctx context.Context, name string) error {
	_, err := c.api.Remove(ctx, &keepalivev1.RemoveRequest{Name: name})
	return c.wrap(err)
}

// Move hands an application to node and returns the node that ran it.
func (c *Client) Move(ctx context.Context, name string, node int) (from int, err error) {
	if node < 1 {
		return 0, fmt.Errorf("keepalive: node %d: %w", node, ErrRefused)
	}
	r, err := c.api.Move(ctx, &keepalivev1.MoveRequest{Name: name, Node: uint32(node)})
	if err != nil {
		return 0, c.wrap(err)
	}
	return int(r.GetFrom()), nil
}

// List returns the applications (name "": all), and the declaration files
// this node could not read (one line each).
func (c *Client) List(ctx context.Context, name string) ([]Status, []string, error) {
	r, err := c.api.List(ctx, &keepalivev1.ListRequest{Name: name})
	if err != nil {
		return nil, nil, c.wrap(err)
	}
	var out []Status
	for _, s := range r.GetApps() {
		st := Status{App: fromProto(s.GetApp()), Source: s.GetSource(), Node: int(s.GetNode()), State: s.GetState(),
			Restarts: int(s.GetRestarts()), Message: s.GetMessage()}
		if ns := s.GetSinceUnixNanos(); ns != 0 {
			st.Since = time.Unix(0, ns)
		}
		for _, g := range s.GetGaveUp() {
			st.GaveUp = append(st.GaveUp, int(g))
		}
		out = append(out, st)
	}
	return out, r.GetErrors(), nil
}

func (c *Client) wrap(err error) error { return daemon.Wrap(err, c.socket) }
