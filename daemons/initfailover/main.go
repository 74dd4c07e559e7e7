// Command initfailover is OpenSSI's single init node: it elects the init
// node with dlmd, starts the cluster's singleton services there only, and
// carries `ssi service` to systemd on any node. main only wires the
// packages: the election's decisions are election (pure core), the
// election's and the APIs' plumbing server (shell).
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/dlmd/dlmdspec"
	"github.com/openssi/openssi/daemons/initfailover/initfailoverspec"
	"github.com/openssi/openssi/daemons/initfailover/server"
	"github.com/openssi/openssi/internal/daemon"
)

func main() { os.Exit(daemon.Main(initfailoverspec.Daemon, os.Args[1:], run)) }

func run(ctx context.Context, env *daemon.Env) error {
	own := initfailoverspec.From(env.Config)
	// A root daemon: its peers believe its own key, pinned by the node's
	// root, not a Connect certificate user openssi could fetch.
	client, src, err := env.ConnectRoot(ctx)
	if err != nil {
		return err
	}
	defer src.Close()

	// Without systemd as the node's init, the node serves ssi init and
	// forwards moves but never becomes the init node.
	var sd server.Systemd
	if server.UnderSystemd() {
		d, err := server.NewDBus(ctx)
		if err != nil {
			return err
		}
		defer d.Close()
		sd = d
	} else {
		env.Log.Warn("systemd is not this node's init: this node will never be the init node, and ssi service cannot act on it")
	}

	_ = env.Notify.Status("waiting for clmsd to report this node UP")
	members, me, view, err := env.WaitUp(ctx)
	if err != nil {
		return err
	}
	defer members.Close()

	addr := env.Advertise(me)
	holder := daemon.Holder(members)
	lookup := daemon.PeerAddress(members, client, initfailoverspec.Name)
	dlmSocket := filepath.Join(env.Config.Cluster.RunDir, dlmdspec.Name+".sock")
	session := func(ctx context.Context) (*dlm.Client, error) { return dlm.New(ctx, dlm.WithSocket(dlmSocket)) }
	var el *server.Elector
	if sd != nil {
		el = server.NewElector(server.ElectorConfig{
			Self:        uint32(me.Number),
			Target:      own.Target,
			Services:    own.Services,
			StopTimeout: own.StopTimeout,
			Systemd:     sd,
			Session:     session,
			Log:         env.Log,
		})
	}
	srv := server.New(server.Config{
		Node: uint32(me.Number), Elector: el, Systemd: sd, Session: session, Source: src, Lookup: lookup, NodeName: holder, Log: env.Log,
	})
	defer srv.Close()

	peers, err := env.ServePeers(ctx, client, src, me.Number, addr, own.RPCPort, server.NewPeer(srv).Register)
	if err != nil {
		return err
	}
	defer peers.Stop()
	local, err := env.ServeLocal(server.NewAPI(srv).Register)
	if err != nil {
		return err
	}
	defer local.Stop()

	// The membership watch feeds the election (a move goes only to an
	// UP node) and the service control (--all is every UP node).
	watchErr := make(chan error, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	for _, n := range view.Nodes {
		srv.Membership(uint32(n.Number), n.State == cluster.Up)
	}
	waitWatch := env.Go(watchCtx, func(ctx context.Context) {
		w := members.Watch(ctx, view.Epoch)
		for w.Next() {
			e := w.Event()
			srv.Membership(uint32(e.Node.Number), e.Type == cluster.NodeUp)
		}
		watchErr <- w.Err()
	})

	// The loop is the election's: on SIGTERM it stops the services of an
	// init node and releases the lock cleanly, so the next init starts
	// them at once.
	stopRun, waitRun := env.StartLoop(local, fmt.Sprintf("node %d: in the init election; serving %s", me.Number, env.SocketPath()),
		func(ctx context.Context, beat func(), ready func()) error {
			ready()
			if el != nil {
				return el.Run(ctx, beat)
			}
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				beat()
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
			}
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
	stopRun()
	runErr := waitRun()
	stopWatch()
	waitWatch()
	env.Drain("stopping", 5*time.Second, func(ctx context.Context) error {
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
