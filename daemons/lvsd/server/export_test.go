package server

import (
	"context"

	"github.com/hashicorp/consul/api"

	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/internal/consul"
)

// StartDirector and StopDirector are what the Elector does when this
// node wins or loses the director's lock.
func (s *Server) StartDirector(ctx context.Context) error {
	s.work = ctx
	return (*director)(s).Start(ctx, directorUnit)
}

func (s *Server) StopDirector(ctx context.Context) error {
	return (*director)(s).Stop(ctx, directorUnit)
}

// DirectorActive is what the Elector polls after a stop.
func (s *Server) DirectorActive(ctx context.Context) bool {
	st, err := (*director)(s).Status(ctx, directorUnit)
	return err != nil || st.ActiveState != "inactive"
}

// SetRegistrations is what a catalog watch of port p delivers.
func (s *Server) SetRegistrations(p lvsdspec.Port, ents []*api.ServiceEntry) {
	s.setRegistrations(p, ents)
}

// SetKVPorts is what the watch of openssi/lvs/ports/ delivers.
func (s *Server) SetKVPorts(ents []consul.Entry) { s.applyKVPorts(ents) }

// WatchListening is Run's watch of the listening sockets.
func (s *Server) WatchListening(ctx context.Context) { s.watchListening(ctx) }

// Reconcile is the tick's retry of the VIPs and the data plane.
func (s *Server) Reconcile() { s.reconcileData() }

// MarkVIPsHeld is what Run does first.
func (s *Server) MarkVIPsHeld() { s.markVIPsHeld() }

// SetDirectorEntries is what the catalog watch of the director's service
// delivers.
func (s *Server) SetDirectorEntries(ents []*api.ServiceEntry) { s.setDirector(ents) }
