package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"time"

	ifserver "github.com/openssi/openssi/daemons/initfailover/server"
	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/daemons/lvsd/pool"
)

// directorUnit names the director role to the Elector: the one "unit"
// this node runs while it holds the director's lock.
const directorUnit = "openssi-lvsd-director"

// director is the Elector's Systemd: starting the director unit takes
// the VIPs and forwards the ports, stopping it drops them. A node that
// loses the lock (its dlmd fenced, its session gone, dlmd silent for the
// lease) is stopped by the Elector at once and killed after 3/4 of
// stop_timeout, while the next director takes the VIPs only stop_timeout
// after its grant: no two nodes hold a VIP, partitions included.
type director Server

var _ ifserver.Units = (*director)(nil)

func (d *director) s() *Server { return (*Server)(d) }

// Start takes the director role: the VIPs on their interfaces,
// announced, and the ports forwarded. ctx ends when the Elector stops
// the role (it ends it before it calls Stop): a Start still under way
// then takes nothing, and undoes what it took, so that it cannot put a
// VIP back on a node that lost the lock after its Stop.
func (d *director) Start(ctx context.Context, unit string) error {
	if unit != directorUnit {
		return fmt.Errorf("lvsd: %s is not %s", unit, directorUnit)
	}
	s := d.s()
	s.dataMu.Lock()
	if err := ctx.Err(); err != nil {
		s.dataMu.Unlock()
		return fmt.Errorf("lvsd: taking the director role: %w", err)
	}
	s.directing = true
	s.dirGen++
	gen := s.dirGen
	s.dataMu.Unlock()
	s.log.Info("this node is the director: taking the VIPs")
	s.reconcileData()
	s.dataMu.Lock()
	undo := ctx.Err() != nil && s.dirGen == gen && s.directing
	if undo {
		s.directing = false
		s.dirGen++
	}
	s.dataMu.Unlock()
	if undo {
		s.log.Info("the director role was stopped while it started: dropping the VIPs")
		s.reconcileData()
		poke(s.register)
		return fmt.Errorf("lvsd: taking the director role: %w", ctx.Err())
	}
	s.spawn(s.work, func(ctx context.Context) { s.announce(ctx, gen) })
	poke(s.register)
	return nil
}

// Stop gives the role up: the VIPs removed, then the forwarding stopped
// (its connections end).
func (d *director) Stop(_ context.Context, unit string) error {
	if unit != directorUnit {
		return fmt.Errorf("lvsd: %w: %s", ifserver.ErrNoUnit, unit)
	}
	s := d.s()
	s.dataMu.Lock()
	was := s.directing
	s.directing = false
	s.dirGen++
	s.dataMu.Unlock()
	if was {
		s.log.Info("this node is no longer the director: dropping the VIPs")
	}
	s.reconcileData()
	poke(s.register)
	return nil
}

// Kill: the same as Stop (there is no process to kill).
func (d *director) Kill(ctx context.Context, unit string, _ syscall.Signal) error {
	return d.Stop(ctx, unit)
}

// Status is active while this node directs or still holds a VIP or
// forwards a port.
func (d *director) Status(_ context.Context, unit string) (ifserver.UnitStatus, error) {
	if unit != directorUnit {
		return ifserver.UnitStatus{}, fmt.Errorf("lvsd: %w: %s", ifserver.ErrNoUnit, unit)
	}
	s := d.s()
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	if s.directing || len(s.vipsHeld) > 0 || len(s.serving) > 0 {
		return ifserver.UnitStatus{LoadState: "loaded", ActiveState: "active"}, nil
	}
	return ifserver.UnitStatus{LoadState: "loaded", ActiveState: "inactive"}, nil
}

// Wants: the role is one unit.
func (d *director) Wants(context.Context, string) ([]string, error) { return nil, nil }

// reconcileData brings the VIPs and the data plane to what the role
// wants: on the director every VIP on its interface and every registered
// port served on every VIP; elsewhere none. A failure is logged and
// tried again on the next tick.
func (s *Server) reconcileData() {
	s.dataMu.Lock()
	defer s.dataMu.Unlock()
	if s.directing {
		for _, v := range s.cfg.VIPs {
			if s.vipsHeld[v] {
				continue
			}
			if err := s.cfg.VIP.Add(v.Interface, v.Prefix); err != nil {
				if s.vipErr[v] != err.Error() {
					s.vipErr[v] = err.Error()
					s.log.WithError(err).WithField("vip", v.Prefix.String()).Warn("adding the VIP: trying again every second")
				}
				continue
			}
			delete(s.vipErr, v)
			s.vipsHeld[v] = true
		}
		s.mu.Lock()
		ports := s.portsByAddrLocked()
		s.mu.Unlock()
		for k, o := range s.serving {
			if n, ok := ports[k]; !ok || !n.SameForwarding(o) {
				s.stopServing(k)
			}
		}
		for k, o := range ports {
			if _, ok := s.serving[k]; ok {
				continue
			}
			if err := s.cfg.Data.Serve(k.addr, o, picker{s: s, port: o.Port}); err != nil {
				// Once per error, not every second: a process of this
				// node listening on the port's wildcard address keeps
				// the proxy from binding the VIP for as long as it runs.
				if s.serveErr[k] != err.Error() {
					s.serveErr[k] = err.Error()
					s.log.WithError(err).WithField("addr", k.String()).
						Warn("forwarding a port: trying again every second (address in use: a process of this node listens on the port's wildcard address and gets the VIP's connections itself, unbalanced)")
				}
				continue
			}
			delete(s.serveErr, k)
			s.serving[k] = o
		}
		s.pushBackends()
		return
	}
	// The VIPs first: closing the proxies (joining their connections)
	// takes time during which this node, no longer the director, would
	// still answer for the VIPs.
	for v := range s.vipsHeld {
		if err := s.cfg.VIP.Remove(v.Interface, v.Prefix); err != nil {
			if s.vipErr[v] != err.Error() {
				s.vipErr[v] = err.Error()
				s.log.WithError(err).WithField("vip", v.Prefix.String()).Error("removing the VIP: trying again every second")
			}
			continue
		}
		delete(s.vipErr, v)
		delete(s.vipsHeld, v)
	}
	for k := range s.serving {
		s.stopServing(k)
	}
	clear(s.serveErr)
	clear(s.pushed)
}

// served is one forwarded address: a VIP and port number, for one
// protocol.
type served struct {
	proto string
	addr  netip.AddrPort
}

func (k served) String() string { return k.proto + " " + k.addr.String() }

// portsByAddrLocked: every registered port on every VIP.
func (s *Server) portsByAddrLocked() map[served]lvsdspec.Options {
	out := map[served]lvsdspec.Options{}
	for _, v := range s.cfg.VIPs {
		for p, o := range s.ports {
			out[served{proto: p.Proto, addr: netip.AddrPortFrom(v.Prefix.Addr(), p.Num)}] = o
		}
	}
	return out
}

// pushBackends hands a BackendSetter the backends of every served
// address whose backends or weights changed since it was last given
// them. The caller holds dataMu.
func (s *Server) pushBackends() {
	bset, ok := s.cfg.Data.(BackendSetter)
	if !ok {
		return
	}
	s.mu.Lock()
	views := map[lvsdspec.Port][]pool.BackendView{}
	for _, pv := range s.pool.View() {
		for _, b := range pv.Backends {
			b.Active = 0 // the kernel counts its own
			views[pv.Options.Port] = append(views[pv.Options.Port], b)
		}
	}
	s.mu.Unlock()
	for k, o := range s.serving {
		bs := views[o.Port]
		if last, ok := s.pushed[k]; ok && slices.Equal(last, bs) {
			continue
		}
		bset.SetBackends(k.addr, o, bs)
		s.pushed[k] = bs
	}
	for k := range s.pushed {
		if _, ok := s.serving[k]; !ok {
			delete(s.pushed, k)
		}
	}
}

func (s *Server) stopServing(k served) {
	if err := s.cfg.Data.Stop(k.addr, k.proto); err != nil {
		s.log.WithError(err).WithField("addr", k.String()).Warn("stopping the forwarding of a port")
	}
	delete(s.serving, k)
}

// announce tells the segment that the VIPs moved here, at each of the
// configured times after the takeover, while this node still directs
// (gen).
func (s *Server) announce(ctx context.Context, gen int) {
	start := time.Now()
	for _, at := range s.cfg.Announce {
		sleep(ctx, time.Until(start.Add(at)))
		if ctx.Err() != nil {
			return
		}
		s.dataMu.Lock()
		if s.dirGen != gen || !s.directing {
			s.dataMu.Unlock()
			return
		}
		var errs []error
		for _, v := range s.cfg.VIPs {
			if s.vipsHeld[v] {
				errs = append(errs, s.cfg.VIP.Announce(v.Interface, v.Prefix.Addr()))
			}
		}
		s.dataMu.Unlock()
		if err := errors.Join(errs...); err != nil {
			s.log.WithError(err).Warn("announcing the VIPs")
		}
	}
}
