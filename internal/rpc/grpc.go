package rpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
)

// DefaultCallTimeout is the deadline given to a client call (and to
// [Dial]) whose context has none.
const DefaultCallTimeout = 5 * time.Second

// DefaultKeepalive is how often both ends of a connection of this package
// ping an idle transport (HTTP/2 PING), and how long they wait for the
// answer before closing it: a peer that is up but silent (its traffic
// black-holed, a half-open TCP connection) is noticed within twice that,
// and its calls and streams fail with Unavailable instead of hanging.
// gRPC does not ping more often than every 10s; a daemon that needs a
// tighter bound (dlmd's lease) watches its own pings on top (package
// peerlink, OutConfig.Silent).
const DefaultKeepalive = 10 * time.Second

// keepaliveServer is the servers' side of DefaultKeepalive: they ping
// their clients too, and let them ping as often as every half of it (a
// client pinging more often than the server's policy allows is cut off
// with GOAWAY "too_many_pings").
func keepaliveServer(every time.Duration) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: every, Timeout: every}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: every / 2, PermitWithoutStream: true}),
	}
}

// keepaliveClient is the clients' side of a keepalive every d.
func keepaliveClient(every time.Duration) grpc.DialOption {
	return grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: every, Timeout: every, PermitWithoutStream: true})
}

// NewServer returns a gRPC server that speaks mutual TLS with the
// certificates of src and accepts only OpenSSI peers (see the package
// doc), pinging its clients every DefaultKeepalive and accepting their
// pings as often as every half of it. opts are appended (interceptors,
// limits, ...; a later option overrides an earlier one).
func NewServer(src Source, opts ...grpc.ServerOption) *grpc.Server {
	all := append([]grpc.ServerOption{grpc.Creds(credentials.NewTLS(src.ServerConfig()))}, keepaliveServer(DefaultKeepalive)...)
	return grpc.NewServer(append(all, opts...)...)
}

// DialOption changes how [Dial] connects.
type DialOption func(*dialOptions)

type dialOptions struct {
	timeout   time.Duration
	keepalive time.Duration
	grpc      []grpc.DialOption
}

// WithKeepalive sets how often the connection pings its idle transport,
// and how long it waits for the answer (default [DefaultKeepalive]; gRPC
// raises anything under 10s to 10s). d must be positive, and not under
// half of the server's (NewServer's) keepalive.
func WithKeepalive(d time.Duration) DialOption {
	return func(o *dialOptions) {
		if d > 0 {
			o.keepalive = d
		}
	}
}

// WithDefaultTimeout sets the deadline applied to calls whose context has
// none (default [DefaultCallTimeout]). d must be positive.
func WithDefaultTimeout(d time.Duration) DialOption {
	return func(o *dialOptions) {
		if d > 0 {
			o.timeout = d
		}
	}
}

// WithGRPCOptions appends raw gRPC dial options (interceptors, keepalive,
// ...).
func WithGRPCOptions(opts ...grpc.DialOption) DialOption {
	return func(o *dialOptions) { o.grpc = append(o.grpc, opts...) }
}

// Dial connects to the OpenSSI daemon at addr ("host:port") over mutual
// TLS with src's certificate, accepting the server only when it holds
// wantService: a service ("openssi-clmsd", on any node), an identity
// ("openssi-clmsd.node3": that service on that node, see [NodeIdentity]),
// or "" (any OpenSSI daemon).
//
// Dial makes the first connection before it returns: it fails when that
// attempt fails (the error wraps [ErrPeerIdentity] when the server's
// certificate was rejected, [ErrRejectedByPeer] when the server rejected
// ours, [ErrUnreachable] when the peer could not be reached) or when ctx ends
// first (without a deadline on ctx, the default call timeout bounds the
// wait). Afterwards the connection reconnects by itself. Every call on it carries a deadline: calls and
// streams whose context has none get the default call timeout, unless the
// context is marked by [WithoutTimeout]. The connection pings its
// transport (see [DefaultKeepalive], [WithKeepalive]): a silent server
// fails the calls and streams on it, even those without a deadline.
func Dial(ctx context.Context, src Source, addr, wantService string, opts ...DialOption) (*grpc.ClientConn, error) {
	o := dialOptions{timeout: DefaultCallTimeout, keepalive: DefaultKeepalive}
	for _, opt := range opts {
		opt(&o)
	}
	creds := &recordingCreds{TransportCredentials: credentials.NewTLS(src.ClientConfig(wantService))}
	all := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithChainUnaryInterceptor(unaryTimeout(o.timeout)),
		grpc.WithChainStreamInterceptor(streamTimeout(o.timeout)),
		keepaliveClient(o.keepalive),
	}, o.grpc...)
	conn, err := grpc.NewClient("passthrough:///"+addr, all...)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s: %w", addr, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	conn.Connect()
	for {
		s := conn.GetState()
		switch s {
		case connectivity.Ready:
			return conn, nil
		case connectivity.TransientFailure:
			conn.Close()
			err, shook := creds.last()
			switch {
			case err != nil:
				return nil, fmt.Errorf("rpc: dial %s (%s): %w", addr, wantService, err)
			case shook:
				return nil, fmt.Errorf("rpc: dial %s (%s): %w", addr, wantService, ErrRejectedByPeer)
			}
			return nil, fmt.Errorf("rpc: dial %s (%s): %w", addr, wantService, ErrUnreachable)
		}
		if !conn.WaitForStateChange(ctx, s) {
			conn.Close()
			return nil, fmt.Errorf("rpc: dial %s (%s): connection %s: %w", addr, wantService, s, ctx.Err())
		}
	}
}

// Errors [Dial] wraps when the first connection attempt fails.
var (
	// ErrUnreachable: the connection failed below TLS (refused, no
	// route, reset).
	ErrUnreachable = errors.New("peer unreachable")
	// ErrRejectedByPeer: our side of the TLS handshake succeeded but the
	// server closed the connection, which it does when it rejects our
	// certificate (with TLS 1.3 the client learns of it only afterwards).
	ErrRejectedByPeer = errors.New("peer closed the connection after the TLS handshake (rejected our certificate?)")
)

// recordingCreds remembers the last client handshake error so that Dial
// can say why a peer was rejected.
type recordingCreds struct {
	credentials.TransportCredentials
	mu    sync.Mutex
	err   error
	shook bool // a handshake succeeded on our side
}

func (c *recordingCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	nc, ai, err := c.TransportCredentials.ClientHandshake(ctx, authority, conn)
	c.mu.Lock()
	c.err = err
	c.shook = c.shook || err == nil
	c.mu.Unlock()
	return nc, ai, err
}

func (c *recordingCreds) last() (err error, shook bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err, c.shook
}

type noTimeoutKey struct{}

// WithoutTimeout marks ctx so that a call or stream made with it gets no
// default deadline: it lasts until ctx ends. It is for a stream that lives
// as long as something else (a link, a watch): derive ctx from that
// thing's lifetime, so that ending it ends the stream.
func WithoutTimeout(ctx context.Context) context.Context {
	return context.WithValue(ctx, noTimeoutKey{}, true)
}

// needsTimeout reports whether a call on ctx gets the default deadline.
func needsTimeout(ctx context.Context) bool {
	if _, ok := ctx.Deadline(); ok {
		return false
	}
	return ctx.Value(noTimeoutKey{}) == nil
}

func unaryTimeout(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if needsTimeout(ctx) {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// streamTimeout gives a stream without a deadline the default timeout for
// its whole life. A stream meant to outlive it (a link, a watch) is opened
// with a context marked by WithoutTimeout.
func streamTimeout(d time.Duration) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if !needsTimeout(ctx) {
			return streamer(ctx, desc, cc, method, opts...)
		}
		ctx, cancel := context.WithTimeout(ctx, d)
		s, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			cancel()
			return nil, err
		}
		return &cancelStream{ClientStream: s, cancel: cancel}, nil
	}
}

// cancelStream releases the timeout's resources once the stream ends.
type cancelStream struct {
	grpc.ClientStream
	cancel context.CancelFunc
}

func (s *cancelStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		s.cancel()
	}
	return err
}

// PeerService returns the OpenSSI service of the peer of a gRPC call: in
// a server handler, the calling daemon (e.g. "openssi-clmsd"); on a
// client, with grpc.Peer, the server. The identity was verified during the
// handshake; a certificate naming several services reports the first.
// ok is false when the connection is not a TLS connection of this package.
func PeerService(ctx context.Context) (string, bool) {
	id, ok := PeerIdentity(ctx)
	return id.Service, ok
}

// PeerIdentity returns the identity (service and node) of the peer of a
// gRPC call, as PeerService does its service. Every identity of a
// certificate this package accepts names the same node.
func PeerIdentity(ctx context.Context) (Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return Identity{}, false
	}
	return peerIdentityOf(p)
}

func peerIdentityOf(p *peer.Peer) (Identity, bool) {
	if p == nil || p.AuthInfo == nil {
		return Identity{}, false
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return Identity{}, false
	}
	// The handshake verified the identities of the cluster's trust
	// domain; the certificate may carry others. All must name one node,
	// so that the node authorised here is the node that was verified.
	ids := peerIdentities(ti.State.PeerCertificates[0], "")
	if len(ids) == 0 {
		return Identity{}, false
	}
	for _, id := range ids[1:] {
		if !SameNode(id.Node, ids[0].Node) {
			return Identity{}, false
		}
	}
	return ids[0], true
}
