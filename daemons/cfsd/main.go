// Command cfsd is OpenSSI's cluster filesystem: it serves this node's
// exports and mounts every export at the same path on every node. main
// only wires the packages: serving and mounting are server's, the file
// protocol's two ends export and cfsmount.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/daemons/cfsd/cfsdspec"
	"github.com/openssi/openssi/daemons/cfsd/server"
	"github.com/openssi/openssi/internal/daemon"
	"google.golang.org/grpc"
)

func main() { os.Exit(daemon.Main(cfsdspec.Daemon, os.Args[1:], run)) }

func run(ctx context.Context, env *daemon.Env) error {
	own := cfsdspec.From(env.Config)
	// A root daemon: its peers believe its own key, pinned by the node's
	// root, not a Connect certificate user openssi could fetch.
	client, src, err := env.ConnectRoot(ctx)
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

	// The local socket first: serving an export sets the process's
	// umask to 0 (the callers' kernels apply theirs), and a socket made
	// after that would be open to all until its chmod.
	local, err := env.ServeLocal(func(*grpc.Server) {})
	if err != nil {
		return err
	}
	defer local.Stop()

	srv, err := server.New(server.Config{
		Self:     uint32(me.Number),
		Exports:  own.Exports,
		Timeout:  own.Timeout,
		KeyDir:   filepath.Join(env.Config.Cluster.StateDir, cfsdspec.Name),
		Source:   src,
		Lookup:   daemon.PeerAddress(members, client, cfsdspec.Name),
		NodeName: daemon.Holder(members),
		OnStatus: func(line string) { _ = env.Notify.Status("%s", line) },
		Log:      env.Log,
	})
	if err != nil {
		return daemon.ConfigError{Err: err}
	}
	defer srv.Close()

	peers, err := env.ServePeers(ctx, client, src, me.Number, env.Advertise(me), own.RPCPort, srv.Register, server.ServerOptions()...)
	if err != nil {
		return err
	}
	defer peers.Stop()

	// A node that goes DOWN loses the files it had open here.
	names := map[int]string{}
	for _, n := range view.Nodes {
		names[n.Number] = n.Name
	}
	watchErr := make(chan error, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	waitWatch := env.Go(watchCtx, func(ctx context.Context) {
		w := members.Watch(ctx, view.Epoch)
		for w.Next() {
			e := w.Event()
			if e.Node.Name != "" {
				names[e.Node.Number] = e.Node.Name
			}
			if e.Type == cluster.NodeDown || e.Type == cluster.NodeLeave {
				srv.NodeDown(names[e.Node.Number])
			}
		}
		watchErr <- w.Err()
	})

	stopRun, waitRun := env.StartLoop(local, fmt.Sprintf("node %d: serving and mounting the cluster filesystem", me.Number),
		func(ctx context.Context, beat func(), ready func()) error {
			ready()
			return srv.Run(ctx, beat)
		})
	defer stopRun()

	var failure error
	select {
	case <-ctx.Done(): // SIGTERM
	case err := <-watchErr:
		if err != nil {
			failure = fmt.Errorf("membership watch: %w", err)
		}
	}
	local.Health.Shutdown()
	runErr := waitRun()
	stopWatch()
	waitWatch()
	env.Drain("stopping", 5*time.Second, func(ctx context.Context) error {
		srv.Close()
		derr := peers.Deregister(ctx)
		local.Stop()
		peers.Stop()
		return derr
	})
	if runErr != nil {
		return runErr
	}
	return failure
}
