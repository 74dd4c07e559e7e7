// Package lvs is the Go client of openssi-lvsd: the cluster's VIPs, the
// director that holds them, the registered ports and the nodes serving
// each, and registering and unregistering ports.
//
//	c, err := lvs.New(ctx)
//	st, err := c.Status(ctx)
//	err = c.AddPort(ctx, lvs.Port{Port: "tcp/8080"}, false)
//
// The caller's identity comes from the socket (SO_PEERCRED): reading is
// open to every user, changes are root's.
package lvs

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/openssi/openssi/internal/localapi"
	lvsv1 "github.com/openssi/openssi/proto/lvs/v1"
)

// DefaultSocket is openssi-lvsd's local API socket.
const DefaultSocket = "/run/openssi/lvsd.sock"

// SocketEnv names the environment variable that overrides DefaultSocket.
const SocketEnv = "OPENSSI_LVSD_SOCKET"

// Errors (errors.Is).
var (
	// ErrNotRunning: openssi-lvsd does not run on this node.
	ErrNotRunning = errors.New("openssi-lvsd is not running on this node")
	// ErrPermission: a change by a caller that is not root.
	ErrPermission = errors.New("permission denied")
	// ErrRefused: a bad port or option, a port registered already or
	// in openssi.yaml, an unknown port.
	ErrRefused = errors.New("refused")
	// ErrUnavailable: Consul could not be reached.
	ErrUnavailable = errors.New("unavailable")
)

// daemon is openssi-lvsd's local API to this package.
var daemon = localapi.Daemon{Prefix: "lvs", Unit: "openssi-lvsd", Says: "lvsd:",
	NotRunning: ErrNotRunning, Permission: ErrPermission, Refused: ErrRefused, Unavailable: ErrUnavailable,
	RefusedToo: []codes.Code{codes.AlreadyExists},
}

// Option configures New.
type Option func(*options)

type options struct{ socket string }

// WithSocket sets the socket (default: $OPENSSI_LVSD_SOCKET, else
// DefaultSocket).
func WithSocket(path string) Option { return func(o *options) { o.socket = path } }

// Client is a connection to the local openssi-lvsd. Safe for concurrent
// use.
type Client struct {
	conn   *grpc.ClientConn
	api    lvsv1.LvsClient
	socket string
}

// New connects to the local openssi-lvsd.
func New(ctx context.Context, opts ...Option) (*Client, error) {
	var o options
	for _, f := range opts {
		f(&o)
	}
	conn, socket, err := daemon.Dial(ctx, o.socket, SocketEnv, DefaultSocket)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, api: lvsv1.NewLvsClient(conn), socket: socket}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// VIP is a cluster address on its interface.
type VIP struct {
	Address   string `json:"address"`
	Interface string `json:"interface"`
}

// Backend is a node serving a port.
type Backend struct {
	Node    int    `json:"node"`
	Address string `json:"address"`
	Weight  int    `json:"weight"`
	// Active counts the connections in progress (the director's count).
	Active int `json:"active"`
}

// Port is a registered port and its options.
type Port struct {
	// Port is tcp/N or udp/N.
	Port          string `json:"port"`
	ProxyProtocol bool   `json:"proxy_protocol,omitempty"`
	// Affinity is "none" or "source" ("" adds none).
	Affinity        string        `json:"affinity,omitempty"`
	AffinityTimeout time.Duration `json:"affinity_timeout,omitempty"`
	// Users are the users (names or uids), besides root, whose listening
	// sockets put a node into the port's pool.
	Users []string `json:"users,omitempty"`
	// FromConfig: registered in openssi.yaml (else by ssi vip port add).
	FromConfig bool      `json:"from_config"`
	Backends   []Backend `json:"backends"`
	Clients    int       `json:"clients,omitempty"`
}

// Status is what a node's openssi-lvsd knows.
type Status struct {
	Node int `json:"node"`
	// Director is the director's node (0: none known); Directing says
	// whether the asked node is it.
	Director  int       `json:"director"`
	Directing bool      `json:"directing"`
	State     string    `json:"state"`
	Since     time.Time `json:"since,omitzero"`
	VIPs      []VIP     `json:"vips"`
	Ports     []Port    `json:"ports"`
	Listening []string  `json:"listening"`
}

// Status returns the VIPs, the director and the pool.
func (c *Client) Status(ctx context.Context) (Status, error) {
	r, err := c.api.Status(ctx, &lvsv1.StatusRequest{})
	if err != nil {
		return Status{}, c.wrap(err)
	}
	st := Status{Node: int(r.GetNode()), Director: int(r.GetDirector()), Directing: r.GetDirecting(), State: r.GetState(),
		Listening: r.GetListening(), VIPs: []VIP{}, Ports: []Port{}}
	if ns := r.GetSinceUnixNanos(); ns != 0 {
		st.Since = time.Unix(0, ns)
	}
	for _, v := range r.GetVips() {
		st.VIPs = append(st.VIPs, VIP{Address: v.GetAddress(), Interface: v.GetInterface()})
	}
	for _, p := range r.GetPorts() {
		q := Port{Port: p.GetPort(), ProxyProtocol: p.GetProxyProtocol(), Affinity: p.GetAffinity(),
			AffinityTimeout: time.Duration(p.GetAffinityTimeoutNanos()), Users: p.GetUsers(), FromConfig: p.GetFromConfig(), Clients: int(p.GetClients()), Backends: []Backend{}}
		for _, b := range p.GetBackends() {
			q.Backends = append(q.Backends, Backend{Node: int(b.GetNode()), Address: b.GetAddress(), Weight: int(b.GetWeight()), Active: int(b.GetActive())})
		}
		st.Ports = append(st.Ports, q)
	}
	return st, nil
}

// AddPort registers a port (replace: over a registration of the same
// port).
func (c *Client) AddPort(ctx context.Context, p Port, replace bool) error {
	_, err := c.api.AddPort(ctx, &lvsv1.AddPortRequest{Port: p.Port, ProxyProtocol: p.ProxyProtocol, Affinity: p.Affinity,
		AffinityTimeoutNanos: int64(p.AffinityTimeout), Users: p.Users, Replace: replace})
	return c.wrap(err)
}

// RemovePort unregisters a port registered with AddPort.
func (c *Client) RemovePort(ctx context.Context, port string) error {
	_, err := c.api.RemovePort(ctx, &lvsv1.RemovePortRequest{Port: port})
	return c.wrap(err)
}

func (c *Client) wrap(err error) error { return daemon.Wrap(err, c.socket) }
