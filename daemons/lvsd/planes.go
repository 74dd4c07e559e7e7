package main

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/daemons/lvsd/server"
)

// thePlanes is what the server drives: the VIPs, the forwarding and the
// watch of listening sockets, with the start-up check of each VIP.
type thePlanes struct {
	check func(ifname string, vip netip.Prefix) error
	vip   server.VIPs
	data  server.DataPlane
	watch server.WatchListening
	// ipvs: the kernel forwards (no PROXY protocol).
	ipvs bool
}

// errNoPlanes: this tree lacks daemons/lvsd/vip, proxy and sockwatch,
// built in parallel; planes_merge.go wires them once they are merged
// (then drop this file and that one's build line). Until then the
// daemon runs, elects its director and serves ssi vip, but refuses VIPs
// and sees no listener.
var errNoPlanes = errors.New("lvsd: built without its data plane (daemons/lvsd/vip, proxy and sockwatch; see planes_merge.go)")

func planes(lvsdspec.Config, []server.VIP, logrus.FieldLogger) (thePlanes, error) {
	return thePlanes{
		check: func(string, netip.Prefix) error { return errNoPlanes },
		vip:   noPlane{},
		data:  noPlane{},
		watch: func(ctx context.Context, _ func() []lvsdspec.Port, _ time.Duration, changed func(map[lvsdspec.Port]bool)) error {
			changed(nil)
			<-ctx.Done()
			return nil
		},
	}, nil
}

type noPlane struct{}

func (noPlane) Add(string, netip.Prefix) error                              { return errNoPlanes }
func (noPlane) Remove(string, netip.Prefix) error                           { return nil }
func (noPlane) Announce(string, netip.Addr) error                           { return errNoPlanes }
func (noPlane) Serve(netip.AddrPort, lvsdspec.Options, server.Picker) error { return errNoPlanes }
func (noPlane) Stop(netip.AddrPort, string) error                           { return nil }
func (noPlane) DropBackend(netip.AddrPort)                                  {}
