// Command vprocd is OpenSSI's process management: it runs programs on any
// node as their caller (remote exec). main only wires the packages: the
// local API, the peer service and the exec between them are server
// (shell), starting a program as its caller is runner.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/daemons/vprocd/migrate"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
	"github.com/openssi/openssi/daemons/vprocd/server"
	"github.com/openssi/openssi/daemons/vprocd/stdiocodec"
	"github.com/openssi/openssi/daemons/vprocd/vprocdspec"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/criu"
	"github.com/openssi/openssi/internal/daemon"
	"github.com/openssi/openssi/internal/execwire"
	"github.com/openssi/openssi/internal/localapi"
)

// criuDetectWait bounds `criu --version` and `criu check` at start.
const criuDetectWait = 30 * time.Second

func main() { os.Exit(daemon.Main(vprocdspec.Daemon, os.Args[1:], run)) }

func run(ctx context.Context, env *daemon.Env) error {
	server.LeadSessionIfOutside()
	own := vprocdspec.From(env.Config)
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

	addr := env.Advertise(me)
	holder := daemon.Holder(members)
	lookup := daemon.PeerAddress(members, client, vprocdspec.Name)
	var scopes server.Scoper
	if server.UnderSystemd() {
		sc, err := server.NewSystemdScopes(ctx)
		if err != nil {
			return err
		}
		defer sc.Close()
		scopes = sc
	}
	loadCfg := server.LoadConfig{LoadLevel: own.LoadLevel, Levels: server.ConsulLevels{KV: consul.NewKV(client)}}
	if server.InContainer() {
		// The kernel's run queue counts the neighbours' tasks: count
		// this node's own: their average over each interval where the
		// kernel keeps schedstat, else a median of counts.
		if r := (proctable.Reader{FS: os.DirFS("/proc")}); r.HaveSchedstat() {
			loadCfg.TaskBusy = r.TaskBusy
		} else {
			loadCfg.Runnable = r.Runnable
			loadCfg.RunnableSamples = 5
		}
	}
	// CRIU moves the programs that do not speak the cooperative
	// protocol: what it is here is said at start and in the status.
	detectCtx, cancelDetect := context.WithTimeout(ctx, criuDetectWait)
	criuState := criu.Detect(detectCtx, criu.Exec{}, own.Migrate.CRIU)
	cancelDetect()
	if criuState.Status == criu.Ready {
		env.Log.WithField("criu", criuState.String()).Info("CRIU moves unmodified programs")
	} else {
		env.Log.WithField("criu", criuState.String()).Warn("CRIU cannot be used: only cooperative programs can move")
	}
	srv := server.New(server.Config{
		Node:           uint32(me.Number),
		Source:         src,
		Lookup:         lookup,
		NodeName:       holder,
		MaxExecsPerUID: own.MaxExecsPerUID,
		Scopes:         scopes,
		WarmGates:      own.WarmGates,
		Load:           loadCfg,
		Migrate: server.MigrateConfig{Core: migrate.Config{ConfirmTimeout: own.Migrate.ConfirmTimeout},
			StateLimit: own.Migrate.CoopStateLimit, CRIU: criuState},
		Leveler: server.LevelerConfig{Enabled: own.Leveler.Enabled, Period: own.Leveler.Period,
			CoolDown: own.Leveler.CoolDown, Stability: own.Leveler.Stability},
		Log: env.Log,
	})
	defer srv.Close()
	if n := srv.EndHeldCopies(); n > 0 {
		env.Log.WithField("count", n).Warn("ended the programs a previous vprocd held for moves")
	}
	for _, n := range view.Nodes {
		srv.MembershipAt(view.Epoch, uint32(n.Number), n.State == cluster.Up)
	}
	if own.ProcMount != "" {
		if m, err := srv.MountProcs(own.ProcMount); err != nil {
			env.Log.WithError(err).Warn("running without the /cluster/proc view")
		} else {
			defer logUnmount(env, m)
		}
	}

	peers, err := env.ServePeers(ctx, client, src, me.Number, addr, own.RPCPort, server.NewPeer(srv).Register, stdiocodec.ServerOptions()...)
	if err != nil {
		return err
	}
	defer peers.Stop()
	// Callers may pass their stdio files (ssi exec does): the local
	// API's connections take them.
	api := server.NewAPI(srv)
	local, err := env.ServeLocal(api.Register, append(stdiocodec.ServerOptions(), grpc.Creds(localapi.FileCredentials()))...)
	if err != nil {
		return err
	}
	defer local.Stop()
	// The same execs on a connection of their own each (ssi exec's):
	// no gRPC set-up on the way of a program's start.
	var execs *server.ExecSocket
	if execLn, _, err := localapi.Listen(execwire.SocketPath(env.SocketPath()), env.Config.Cluster.SocketGroup); err != nil {
		// Callers then use the gRPC API for their execs too.
		env.Log.WithError(err).Warn("running without the exec socket")
	} else {
		execs = server.ServeExecSocket(api, execLn)
		defer execs.Stop()
	}

	// The loop follows membership (a NODEDOWN ends that node's execs at
	// once) and feeds the watchdog.
	events := make(chan cluster.Event, 64)
	watchErr := make(chan error, 1)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	waitWatch := env.Go(watchCtx, func(ctx context.Context) {
		w := members.Watch(ctx, view.Epoch)
		for w.Next() {
			select {
			case events <- w.Event():
			case <-ctx.Done():
			}
		}
		watchErr <- w.Err()
	})
	stopRun, waitRun := env.StartLoop(local, fmt.Sprintf("node %d: running programs; serving %s; criu %s", me.Number, env.SocketPath(), criuState),
		func(ctx context.Context, beat func(), ready func()) error {
			ready()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				beat()
				select {
				case <-ctx.Done():
					return nil
				case e := <-events:
					srv.MembershipAt(e.Epoch, uint32(e.Node.Number), e.Type == cluster.NodeUp)
				case <-t.C:
					srv.TrimGates()
				}
			}
		})
	defer stopRun()
	waitLoad := env.Go(watchCtx, srv.RunLoad) // the load exchange, once a second
	defer waitLoad()
	waitLevel := env.Go(watchCtx, srv.RunLevel) // the load leveler, every vprocd.leveler.period
	defer waitLevel()

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
	waitWatch()
	env.Drain("stopping: programs of callers still attached are killed", 5*time.Second, func(ctx context.Context) error {
		// Each exec is a stream that lasts as long as its program:
		// stopping the servers ends them, and their programs with them
		// (detached ones run on).
		srv.Stop()
		derr := peers.Deregister(ctx)
		if execs != nil {
			execs.Stop()
		}
		local.Stop()
		peers.Stop()
		return derr
	})
	if err := waitRun(); err != nil {
		return err
	}
	return failure
}

// logUnmount unmounts the /cluster/proc view, saying so if it fails.
func logUnmount(env *daemon.Env, m *server.ProcMount) {
	if err := m.Unmount(); err != nil {
		env.Log.WithError(err).Warn("unmounting the /cluster/proc view")
	}
}
