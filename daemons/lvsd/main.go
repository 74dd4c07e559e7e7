// Command openssi-lvsd is OpenSSI's cluster IP address and connection
// load balancer (the HA-LVS of the 2004 OpenSSI, with automatic port
// redirection): the director, elected with a dlmd lock, holds the VIPs
// and forwards each registered port to the nodes that listen on it.
// main only wires the packages: the scheduler is pool (pure core), the
// election, registrations and API the server shell, the VIPs, the
// listening sockets and the forwarding the planes (planes.go).
package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/client/vproc"
	"github.com/openssi/openssi/daemons/dlmd/dlmdspec"
	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/daemons/lvsd/server"
	"github.com/openssi/openssi/daemons/lvsd/vip"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/daemon"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == lvsdspec.ReleaseFlag {
		os.Exit(releaseVIPs(os.Stderr))
	}
	os.Exit(daemon.Main(lvsdspec.Daemon, os.Args[1:], run))
}

// checkVIPs checks that each VIP's interface exists and that the VIP is
// inside one of its subnets: else one line naming the key
// (lvsd.vips[i].interface or .address), exit 2.
func checkVIPs(vips []server.VIP, check func(ifname string, vip netip.Prefix) error) error {
	for i, v := range vips {
		err := check(v.Interface, v.Prefix)
		var ce *vip.CheckError
		switch {
		case err == nil:
		case errors.As(err, &ce):
			return daemon.ConfigError{Err: fmt.Errorf("config: %s.vips[%d].%s: %v", lvsdspec.Name, i, ce.Field, ce.Err)}
		default:
			return fmt.Errorf("lvsd: checking %s.vips[%d] (%s on %s): %w", lvsdspec.Name, i, v.Prefix, v.Interface, err)
		}
	}
	return nil
}

func run(ctx context.Context, env *daemon.Env) error {
	own := lvsdspec.From(env.Config)
	var vips []server.VIP
	for _, v := range own.VIPs {
		p, err := lvsdspec.ParseVIP(v.Address)
		if err != nil { // Validate let it through: cannot happen
			return daemon.ConfigError{Err: err}
		}
		vips = append(vips, server.VIP{Interface: v.Interface, Prefix: p})
	}
	pl, err := planes(own, vips, env.Log)
	if err != nil {
		return err
	}
	if err := checkVIPs(vips, pl.check); err != nil {
		return err
	}
	client, err := env.Consul()
	if err != nil {
		return err
	}

	_ = env.Notify.Status("waiting for clmsd to report this node UP")
	members, me, view, err := env.WaitUp(ctx)
	if err != nil {
		return err
	}
	defer members.Close()
	addr, err := netip.ParseAddr(env.Advertise(me))
	if err != nil {
		return fmt.Errorf("lvsd: this node's address %q: %w", env.Advertise(me), err)
	}

	dlmSocket := filepath.Join(env.Config.Cluster.RunDir, dlmdspec.Name+".sock")
	vprocSocket := filepath.Join(env.Config.Cluster.RunDir, "vprocd.sock")
	// The watch of listening sockets failing: `ssi status` and systemd
	// say so (local is set before Run starts, the only caller).
	var local *daemon.Local
	health := func(err error) {
		if err != nil {
			local.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
			_ = env.Notify.Status("%v", err)
			return
		}
		local.Ready()
		_ = env.Notify.Status("node %d: watching the listening sockets again", me.Number)
	}
	s := server.New(server.Config{
		Self: uint32(me.Number), Addr: addr.Unmap(), VIPs: vips, Ports: own.PortOptions(),
		StopTimeout: own.StopTimeout, WatchEvery: own.WatchEvery, DlmLease: dlmdspec.From(env.Config).Lease,
		IPVS:    pl.ipvs,
		Consul:  client,
		KV:      consul.NewKV(client),
		Session: func(ctx context.Context) (*dlm.Client, error) { return dlm.New(ctx, dlm.WithSocket(dlmSocket)) },
		Data:    pl.data, VIP: pl.vip, Watch: pl.watch,
		Loads: func(ctx context.Context) ([]server.NodeLoad, error) {
			c, err := vproc.New(ctx, vproc.WithSocket(vprocSocket))
			if err != nil {
				return nil, err
			}
			defer c.Close()
			v, err := c.Loads(ctx)
			if err != nil {
				return nil, err
			}
			out := make([]server.NodeLoad, 0, len(v.Loads))
			for _, l := range v.Loads {
				out = append(out, server.NodeLoad{Node: uint32(l.Node), CPUs: l.CPUs, Score: l.Score})
			}
			return out, nil
		},
		Health: health,
		Log:    env.Log,
	})
	for _, n := range view.Nodes {
		s.Membership(uint32(n.Number), n.Name, n.Address, n.State == cluster.Up)
	}
	local, err = env.ServeLocal(server.NewAPI(s).Register)
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
			s.Membership(uint32(e.Node.Number), e.Node.Name, e.Node.Address, e.Type == cluster.NodeUp)
		}
		watchErr <- w.Err()
	})

	stopRun, waitRun := env.StartLoop(local, fmt.Sprintf("node %d: %d VIP(s), %d port(s) of openssi.yaml; serving %s", me.Number, len(vips), len(own.Ports), env.SocketPath()),
		func(ctx context.Context, beat func(), ready func()) error {
			ready()
			return s.Run(ctx, beat)
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
