// Command clmsd is OpenSSI's cluster membership daemon. main only wires the
// packages: the logic is in membership (pure core) and server (shell).
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/openssi/openssi/daemons/clmsd/server"
	"github.com/openssi/openssi/internal/daemon"
	"github.com/openssi/openssi/internal/lifecycle"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/rpc"
)

func main() { os.Exit(daemon.Main("clmsd", os.Args[1:], run)) }

func run(ctx context.Context, env *daemon.Env) error {
	cfg := env.Config
	log := env.Log
	client, err := env.Consul()
	if err != nil {
		return err
	}
	srv := server.New(server.Config{
		NodeNumber:       cfg.Clmsd.NodeNumber,
		StateDir:         cfg.Cluster.StateDir,
		AdvertiseAddress: cfg.Cluster.AdvertiseAddress,
		SkewThreshold:    cfg.Clmsd.SkewThreshold,
	}, client, log)

	// Certificates first: once the node is UP its peers may call it.
	_ = env.Notify.Status("getting inter-node certificates (%s)", cfg.Cluster.TLS.Source)
	src, err := env.TLS(ctx, client)
	if err != nil {
		return err
	}
	defer src.Close()
	_ = env.Notify.Status("joining the cluster through Consul at %s", cfg.Cluster.Consul.Address)
	if err := joinWithRetry(ctx, env, srv); err != nil {
		return err
	}

	// Inter-node API (mutual TLS).
	peerLn, err := net.Listen("tcp", net.JoinHostPort(srv.Self().Address, strconv.Itoa(cfg.Clmsd.RPCPort)))
	if err != nil {
		return fmt.Errorf("listen for peers: %w", err)
	}
	peerSrv := rpc.NewServer(src)
	server.NewPeer(srv).Register(peerSrv)
	go func() { _ = peerSrv.Serve(peerLn) }()
	defer peerSrv.Stop()
	deregister, err := rpc.Register(client, "clmsd", srv.Number(), srv.Self().Address, cfg.Clmsd.RPCPort)
	if err != nil {
		return err
	}

	// Local API.
	ln, err := env.ListenLocal()
	if err != nil {
		return err
	}
	localSrv := grpc.NewServer(grpc.Creds(localapi.Credentials()))
	healthSrv := health.NewServer()
	healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(localSrv, healthSrv)
	var left atomic.Bool
	leaveReq := make(chan struct{})
	server.NewAPI(srv, func() {
		if !left.Swap(true) {
			close(leaveReq)
		}
	}).Register(localSrv)
	go func() { _ = localSrv.Serve(ln) }()

	// The reconcile loop runs until the drain below is done with it: a
	// leave needs it to see its own NODELEAVE.
	runCtx, stopRun := context.WithCancel(context.Background())
	defer stopRun()
	proberCtx, stopProber := context.WithCancel(ctx)
	defer stopProber()
	go server.NewSkewProber(srv, src, cfg.Clmsd.SkewInterval).Run(proberCtx)
	runErr := make(chan error, 1)
	go func() {
		runErr <- srv.Run(runCtx, env.Watchdog.Beat, func() {
			healthSrv.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			_ = env.Notify.Ready()
			_ = env.Notify.Status("node %d UP; serving %s", srv.Number(), env.SocketPath())
			log.WithField("socket", env.SocketPath()).Info("ready")
		})
	}()
	select {
	case <-ctx.Done(): // SIGTERM: a stop of the unit is a graceful leave
	case <-leaveReq: // `ssi node leave` (already recorded)
	}

	healthSrv.Shutdown()
	stopProber()
	_ = env.Notify.Status("leaving the cluster")
	derr := lifecycle.Drain(10*time.Second, func(ctx context.Context) error {
		var errs []error
		if !left.Swap(true) {
			if _, err := srv.Leave(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		stopRun()
		if err := deregister(); err != nil {
			errs = append(errs, err)
		}
		stopGRPC(ctx, localSrv)
		stopGRPC(ctx, peerSrv)
		return errors.Join(errs...)
	})
	if derr != nil {
		log.WithError(derr).Warn("drain")
	}
	stopRun()
	return <-runErr
}

// joinWithRetry joins the cluster, retrying while the Consul agent is not
// reachable yet (it may start after us); a node number held by another live
// node is fatal at once.
func joinWithRetry(ctx context.Context, env *daemon.Env, srv *server.Server) error {
	delay := 200 * time.Millisecond
	for {
		err := srv.Join(ctx)
		if errors.Is(err, server.ErrNumberInUse) {
			return daemon.ConfigError{Err: err}
		}
		if err == nil || ctx.Err() != nil {
			return err
		}
		env.Log.WithError(err).Warn("cannot join yet; retrying")
		_ = env.Notify.Status("waiting for Consul: %v", err)
		env.Watchdog.Beat()
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if delay < 5*time.Second {
			delay *= 2
		}
	}
}

// stopGRPC stops s gracefully, forcibly when ctx ends first.
func stopGRPC(ctx context.Context, s *grpc.Server) {
	done := make(chan struct{})
	go func() { s.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.Stop()
	}
}
