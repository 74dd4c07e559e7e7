package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/consul/api"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/openssi/openssi/internal/lifecycle"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/rpc"
)

// Peers is a daemon's inter-node gRPC server, registered in Consul's
// catalog as openssi-<daemon> for its node number.
type Peers struct {
	Served
	// Deregister removes the catalog entry.
	Deregister func(context.Context) error
}

// Served is a gRPC server Env serves; Stop and Shutdown wait until its
// Serve goroutine has returned.
type Served struct {
	*grpc.Server
	served <-chan struct{} // closed when Serve has returned
}

// Stop stops serving at once and waits until the serving goroutine is done.
func (s Served) Stop() {
	s.Server.Stop()
	<-s.served
}

// Shutdown stops serving gracefully, forcibly when ctx ends first, and
// waits until the serving goroutine is done.
func (s Served) Shutdown(ctx context.Context) {
	StopGRPC(ctx, s.Server)
	<-s.served
}

// ServePeers listens on addr:port, serves the services register adds with
// mutual TLS from src, and registers the endpoint in the catalog so peers
// find it by node number (rpc.Lookup). ctx bounds the registration. opts
// are added to the server's (flow-control windows, buffers).
func (e *Env) ServePeers(ctx context.Context, client *api.Client, src rpc.Source, node int, addr string, port int, register func(*grpc.Server), opts ...grpc.ServerOption) (*Peers, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(addr, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("listen for peers: %w", err)
	}
	s := rpc.NewServer(src, append([]grpc.ServerOption{grpc.WaitForHandlers(true)}, opts...)...)
	register(s)
	p := &Peers{Served: Served{Server: s, served: e.serve(s, ln)}}
	p.Deregister, err = rpc.Register(ctx, client, e.Name, node, addr, port)
	if err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// Local is a daemon's local API server on its socket, with the gRPC health
// service (`ssi status` asks it) reporting NOT_SERVING until Ready.
type Local struct {
	Served
	Health *health.Server
}

// ServeLocal opens the daemon's socket and serves the services register
// adds, each call carrying the caller's SO_PEERCRED identity. opts are
// added to the server's (flow-control windows, buffers).
func (e *Env) ServeLocal(register func(*grpc.Server), opts ...grpc.ServerOption) (*Local, error) {
	ln, err := e.ListenLocal()
	if err != nil {
		return nil, err
	}
	s := grpc.NewServer(append([]grpc.ServerOption{grpc.Creds(localapi.Credentials()), grpc.WaitForHandlers(true)}, opts...)...)
	h := health.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s, h)
	register(s)
	return &Local{Served: Served{Server: s, served: e.serve(s, ln)}, Health: h}, nil
}

// Ready reports the daemon serving to `ssi status` and to systemd.
func (l *Local) Ready() { l.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING) }

// Permanent marks an error Retry must not retry.
type Permanent struct{ Err error }

func (p Permanent) Error() string { return p.Err.Error() }
func (p Permanent) Unwrap() error { return p.Err }

// Retry calls try until it returns nil, a Permanent error (returned
// unwrapped) or ctx ends, waiting first, doubling up to max, between
// attempts. The watchdog is fed while waiting: waiting for a dependency
// (Consul, clmsd) is the daemon's work during start-up.
func (e *Env) Retry(ctx context.Context, first, max time.Duration, try func() error) error {
	delay := first
	for {
		err := try()
		var p Permanent
		if errors.As(err, &p) {
			return p.Err
		}
		if err == nil || ctx.Err() != nil {
			return err
		}
		e.Watchdog.Beat()
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if delay < max {
			delay *= 2
		}
	}
}

// StopGRPC stops s gracefully, forcibly when ctx ends first; either way it
// returns once s has stopped.
func StopGRPC(ctx context.Context, s *grpc.Server) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.Stop()
		<-done // GracefulStop returns once Stop has ended every call
	}
}

// Connect returns a client of the local Consul agent (cluster.consul) and
// the inter-node certificate source (cluster.tls), telling systemd what it
// waits for. The caller closes the source.
func (e *Env) Connect(ctx context.Context) (*api.Client, rpc.Source, error) {
	client, err := e.Consul()
	if err != nil {
		return nil, nil, err
	}
	_ = e.Notify.Status("getting inter-node certificates (%s)", e.Config.Cluster.TLS.Source)
	src, err := e.TLS(ctx, client)
	if err != nil {
		return nil, nil, err
	}
	return client, src, nil
}

// Loop is a daemon's work loop: it runs until ctx ends, feeds the watchdog
// through beat and calls ready once the daemon serves.
type Loop func(ctx context.Context, beat func(), ready func()) error

// StartLoop runs loop in a goroutine of its own. Its context ends when
// stop is called, not on SIGTERM: the daemon's drain decides when the
// loop is no longer needed. When loop calls ready, the daemon is reported
// ready: local health SERVING, READY=1 and status to systemd, a log line.
// wait stops the loop and returns its error. Main joins the loop too, so
// run must have called stop (or wait) by the time it returns.
func (e *Env) StartLoop(local *Local, status string, loop Loop) (stop func(), wait func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	e.goJoined(func() {
		done <- loop(ctx, e.Watchdog.Beat, func() {
			local.Ready()
			_ = e.Notify.Ready()
			_ = e.Notify.Status("%s", status)
			e.Log.WithField("socket", e.SocketPath()).Info("ready")
		})
	})
	return cancel, func() error {
		cancel()
		return <-done
	}
}

// Drain reports the daemon stopping to systemd with status, then runs
// shutdown with at most timeout (lifecycle.Drain); a failure or a timeout
// is logged, not returned: the daemon exits either way.
func (e *Env) Drain(status string, timeout time.Duration, shutdown func(ctx context.Context) error) {
	_ = e.Notify.Status("%s", status)
	if err := lifecycle.Drain(timeout, shutdown); err != nil {
		e.Log.WithError(err).Warn("drain")
	}
}
