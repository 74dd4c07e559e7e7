// Command dlmd is OpenSSI's distributed lock manager. main only wires the
// packages: the lock table is lockspace (pure core), the directory and
// recovery rules are directory (pure), the distributed protocol is node
// (pure core), the links, streams and clock are server (shell).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/daemons/dlmd/dlmdspec"
	"github.com/openssi/openssi/daemons/dlmd/node"
	"github.com/openssi/openssi/daemons/dlmd/server"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/daemon"
	"github.com/openssi/openssi/internal/rpc"
)

// lookupTimeout bounds one catalog lookup of a peer's address.
const lookupTimeout = 5 * time.Second

// sweepEvery is how often the coordinator looks for lockspaces made on
// first use that have had no lock for the grace time.
const sweepEvery = time.Minute

func main() { os.Exit(daemon.Main(dlmdspec.Daemon, os.Args[1:], run)) }

func run(ctx context.Context, env *daemon.Env) error {
	own := dlmdspec.From(env.Config)
	client, src, err := env.Connect(ctx)
	if err != nil {
		return err
	}
	defer src.Close()

	_ = env.Notify.Status("waiting for clmsd to report this node UP")
	members, me, view, err := env.WaitUp(ctx)
	if err != nil {
		return err
	}
	defer members.Close()

	addr := env.Advertise(me)
	holder := daemon.Holder(members)
	// The address of node n's dlmd is the one registered on its holder's
	// Consul node: any node may register an instance claiming n.
	lookup := func(n uint32) (string, error) {
		lctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
		defer cancel()
		name, err := holder(lctx, n)
		if err != nil {
			return "", err
		}
		if name == "" {
			return "", fmt.Errorf("%w %d", server.ErrNoHolder, n)
		}
		return rpc.LookupRegisteredOn(lctx, client, "dlmd", int(n), name)
	}
	srv := server.New(server.Config{
		Node:             uint32(me.Number),
		Incarnation:      uint64(time.Now().UnixNano()),
		DeadlockInterval: own.DeadlockInterval,
		Lease:            own.Lease,
		Limits: node.Limits{LocksPerSession: own.MaxLocksPerSession, LocksPerUID: own.MaxLocksPerUID,
			PendingPerSession: own.MaxPendingPerSession, PendingPerUID: own.MaxPendingPerUID},
		Source:              src,
		Lookup:              lookup,
		NodeName:            holder,
		MaxSessionsPerUID:   own.MaxSessionsPerUID,
		Lockspaces:          server.KVStore{KV: consul.NewKV(client)},
		MaxLockspacesPerUID: own.MaxLockspacesPerUID,
		LockspaceGrace:      own.LockspaceGrace,
		Log:                 env.Log,
	})

	peers, err := env.ServePeers(ctx, client, src, me.Number, addr, own.RPCPort, server.NewPeer(srv).Register)
	if err != nil {
		return err
	}
	defer peers.Stop()
	api := server.NewAPI(srv)
	local, err := env.ServeLocal(api.Register)
	if err != nil {
		return err
	}

	stopRun, waitRun := env.StartLoop(local, fmt.Sprintf("node %d: granting locks; serving %s", me.Number, env.SocketPath()), srv.Run)
	defer stopRun()
	up := make([]uint32, 0, len(view.Nodes))
	for _, n := range view.Nodes {
		if n.State == cluster.Up {
			up = append(up, uint32(n.Number))
		}
	}
	srv.Start(view.Epoch, up)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watchErr := make(chan error, 1)
	waitWatch := env.Go(watchCtx, func(ctx context.Context) {
		w := members.Watch(ctx, view.Epoch)
		for w.Next() {
			e := w.Event()
			srv.Membership(e.Epoch, uint32(e.Node.Number), e.Type == cluster.NodeUp)
		}
		watchErr <- w.Err()
	})

	waitSweep := env.Go(watchCtx, func(ctx context.Context) {
		t := time.NewTicker(sweepEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				removed, err := api.Sweep(ctx, now)
				if err != nil {
					env.Log.WithError(err).Debug("unused lockspaces not swept this round")
				}
				for _, name := range removed {
					env.Log.WithField("lockspace", name).Info("removed a lockspace made on first use: no locks for the grace time")
				}
			}
		}
	})

	var failure error
	select {
	case <-ctx.Done(): // SIGTERM
	case err := <-watchErr:
		if err != nil {
			failure = fmt.Errorf("membership watch: %w", err)
		}
	}
	local.Health.Shutdown()
	stopWatch()
	// Join the watch before the servers and the loop stop: it feeds the
	// loop.
	waitWatch()
	waitSweep()
	// End the clients' sessions first (their locks are released, or left
	// as orphans, as when a client exits), so that no client of this node
	// still believes it holds a lock when the others hear the goodbye and
	// grant what this node held.
	local.Stop()
	// Say goodbye while the links are up, so that the other nodes recover
	// without this dlmd at once rather than fence or wait for its lease.
	leaveCtx, cancelLeave := context.WithTimeout(context.Background(), time.Second)
	if err := srv.Leave(leaveCtx); err != nil {
		env.Log.WithError(err).Warn("goodbye not acknowledged by every member")
	}
	cancelLeave()
	env.Drain("stopping: this node's locks are released", 5*time.Second, func(ctx context.Context) error {
		// Sessions and channels are long-lived streams: a graceful stop
		// would wait for every client to go. Their locks end with dlmd.
		derr := peers.Deregister(ctx)
		local.Stop()
		peers.Stop()
		return derr
	})
	if err := waitRun(); err != nil {
		return err
	}
	return failure
}
