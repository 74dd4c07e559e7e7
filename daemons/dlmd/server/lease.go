package server

import (
	"sync/atomic"

	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// leaseShare is what this node says of its lease in its hellos, pings and
// pongs (see node.Node.Lease), published by the loop for the links'
// goroutines.
type leaseShare struct {
	setting, inUse atomic.Int64
}

// publishLease copies the core's lease setting and lease in use for the
// links; the loop calls it after each operation.
func (s *Server) publishLease() {
	setting, inUse := s.core.Lease()
	s.lease.setting.Store(int64(setting))
	s.lease.inUse.Store(int64(inUse))
}

// ping is a ping (or a pong) carrying sent and this node's lease.
func (s *Server) ping(sent int64) *dlmpeerv1.Ping {
	return &dlmpeerv1.Ping{SentNanos: sent, LeaseNanos: s.lease.setting.Load(), LeaseInUseNanos: s.lease.inUse.Load()}
}
