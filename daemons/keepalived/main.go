// Command openssi-keepalived is OpenSSI's application availability
// daemon (the 2004 OpenSSI's spawndaemon and keepalive): it runs each
// monitored application on exactly one node, restarts it in place and
// moves it to the next node when it keeps failing or its node dies. main
// only wires the packages: the rules are placement (pure core) and decl
// (the declarations), the elections, units and API the server shell.
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
	ifserver "github.com/openssi/openssi/daemons/initfailover/server"
	"github.com/openssi/openssi/daemons/keepalived/keepalivedspec"
	"github.com/openssi/openssi/daemons/keepalived/server"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/daemon"
)

func main() { os.Exit(daemon.Main(keepalivedspec.Daemon, os.Args[1:], run)) }

func run(ctx context.Context, env *daemon.Env) error {
	own := keepalivedspec.From(env.Config)
	client, err := env.Consul()
	if err != nil {
		return err
	}

	// Without systemd as the node's init, the node serves ssi keepalive
	// but runs no application (units nil).
	var units server.Units
	if ifserver.UnderSystemd() {
		d, err := server.NewDBus(ctx)
		if err != nil {
			return err
		}
		defer d.Close()
		units = d
	} else {
		env.Log.Warn("systemd is not this node's init: this node will run no monitored application")
	}

	_ = env.Notify.Status("waiting for clmsd to report this node UP")
	members, me, view, err := env.WaitUp(ctx)
	if err != nil {
		return err
	}
	defer members.Close()

	bindsTo := ""
	if os.Getenv("INVOCATION_ID") != "" {
		// Started by systemd as its unit: the applications' units stop
		// with it, so that none outlives its election.
		bindsTo = keepalivedspec.Daemon.Unit
	}
	dlmSocket := filepath.Join(env.Config.Cluster.RunDir, dlmdspec.Name+".sock")
	m := server.New(server.Config{
		Self: uint32(me.Number), Dir: own.Dir, StopTimeout: own.StopTimeout, Rescan: own.Rescan, Units: units,
		KV:      consul.NewKV(client),
		Session: func(ctx context.Context) (*dlm.Client, error) { return dlm.New(ctx, dlm.WithSocket(dlmSocket)) },
		BindsTo: bindsTo, Log: env.Log,
	})
	for _, n := range view.Nodes {
		m.Membership(uint32(n.Number), n.State == cluster.Up)
	}
	local, err := env.ServeLocal(server.NewAPI(m).Register)
	if err != nil {
		return err
	}
	defer local.Stop()

	watchErr := make(chan error, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	waitWatch := env.Go(watchCtx, func(ctx context.Context) {
		w := members.Watch(ctx, view.Epoch)
		for w.Next() {
			e := w.Event()
			m.Membership(uint32(e.Node.Number), e.Type == cluster.NodeUp)
		}
		watchErr <- w.Err()
	})

	stopRun, waitRun := env.StartLoop(local, fmt.Sprintf("node %d: keeping applications alive; serving %s", me.Number, env.SocketPath()),
		func(ctx context.Context, beat func(), ready func()) error {
			ready()
			return m.Run(ctx, beat)
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
	env.Drain("stopping", 5*time.Second, func(context.Context) error {
		local.Stop()
		return nil
	})
	if runErr != nil {
		return runErr
	}
	return failure
}
