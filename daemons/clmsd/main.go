// Command clmsd is OpenSSI's cluster membership daemon. main only wires the
// packages: the logic is in membership (pure core) and server (shell).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/openssi/openssi/daemons/clmsd/clmsdspec"
	"github.com/openssi/openssi/daemons/clmsd/server"
	"github.com/openssi/openssi/internal/daemon"
)

func main() { os.Exit(daemon.Main(clmsdspec.Daemon, os.Args[1:], run)) }

func run(ctx context.Context, env *daemon.Env) error {
	cluster, own := env.Config.Cluster, clmsdspec.From(env.Config)
	// Certificates first: once the node is UP its peers may call it.
	client, src, err := env.Connect(ctx)
	if err != nil {
		return err
	}
	defer src.Close()
	srv := server.New(server.Config{
		NodeNumber:       own.NodeNumber,
		StateDir:         cluster.StateDir,
		AdvertiseAddress: cluster.AdvertiseAddress,
		SkewThreshold:    own.SkewThreshold,
	}, client, env.Log)
	_ = env.Notify.Status("joining the cluster through Consul at %s", cluster.Consul.Address)
	if err := joinWithRetry(ctx, env, srv); err != nil {
		return err
	}

	peers, err := env.ServePeers(ctx, client, src, srv.Number(), srv.Self().Address, own.RPCPort, server.NewPeer(srv).Register)
	if err != nil {
		return err
	}
	defer peers.Stop()

	var left atomic.Bool
	leaveReq := make(chan struct{})
	local, err := env.ServeLocal(server.NewAPI(srv, func() {
		if !left.Swap(true) {
			close(leaveReq)
		}
	}).Register)
	if err != nil {
		return err
	}

	proberCtx, stopProber := context.WithCancel(ctx)
	waitProber := env.Go(proberCtx, server.NewSkewProber(srv, src, own.SkewInterval).Run)
	defer func() { stopProber(); waitProber() }()
	// The reconcile loop runs until the drain below is done with it: a
	// leave needs it to see its own NODELEAVE.
	stopRun, waitRun := env.StartLoop(local, fmt.Sprintf("node %d UP; serving %s", srv.Number(), env.SocketPath()), srv.Run)
	defer stopRun()
	select {
	case <-ctx.Done(): // SIGTERM: a stop of the unit is a graceful leave
	case <-leaveReq: // `ssi node leave` (already recorded)
	}

	local.Health.Shutdown()
	stopProber()
	env.Drain("leaving the cluster", 10*time.Second, func(ctx context.Context) error {
		var errs []error
		if !left.Swap(true) {
			if _, err := srv.Leave(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		stopRun()
		if err := peers.Deregister(ctx); err != nil {
			errs = append(errs, err)
		}
		local.Shutdown(ctx)
		peers.Shutdown(ctx)
		return errors.Join(errs...)
	})
	return waitRun()
}

// joinWithRetry joins the cluster, retrying while the Consul agent is not
// reachable yet (it may start after us); a node number held by another live
// node is fatal at once.
func joinWithRetry(ctx context.Context, env *daemon.Env, srv *server.Server) error {
	return env.Retry(ctx, 200*time.Millisecond, 5*time.Second, func() error {
		err := srv.Join(ctx)
		if errors.Is(err, server.ErrNumberInUse) {
			return daemon.Permanent{Err: daemon.ConfigError{Err: err}}
		}
		if err != nil && ctx.Err() == nil {
			env.Log.WithError(err).Warn("cannot join yet; retrying")
			_ = env.Notify.Status("waiting for Consul: %v", err)
		}
		return err
	})
}
