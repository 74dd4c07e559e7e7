package server

import (
	"context"
	"errors"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/internal/localapi"
	"github.com/openssi/openssi/internal/settings"
	lvsv1 "github.com/openssi/openssi/proto/lvs/v1"
)

// API is the local API on openssi-lvsd's socket. Reading is open to
// every local user; changes are root's (SO_PEERCRED).
type API struct {
	lvsv1.UnimplementedLvsServer
	s *Server
}

// NewAPI returns the local API of s.
func NewAPI(s *Server) *API { return &API{s: s} }

// Register adds the service to a gRPC server.
func (a *API) Register(g *grpc.Server) { lvsv1.RegisterLvsServer(g, a) }

func requireRoot(ctx context.Context, what string) error {
	c, ok := localapi.CallerFrom(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "lvsd: caller credentials unavailable")
	}
	if c.UID != 0 {
		return status.Errorf(codes.PermissionDenied, "lvsd: ssi vip port %s: only root may change the registered ports (uid %d)", what, c.UID)
	}
	return nil
}

// Status returns this node's view.
func (a *API) Status(context.Context, *lvsv1.StatusRequest) (*lvsv1.StatusReply, error) {
	st := a.s.Status()
	_, fromConfig := a.s.Ports()
	r := &lvsv1.StatusReply{Node: st.Self, Director: st.Director, Directing: st.Directing, State: st.State.String()}
	if !st.Since.IsZero() {
		r.SinceUnixNanos = st.Since.UnixNano()
	}
	for _, v := range st.VIPs {
		r.Vips = append(r.Vips, &lvsv1.Vip{Address: v.Prefix.String(), Interface: v.Interface})
	}
	for _, pv := range st.Pool {
		o := pv.Options
		p := &lvsv1.Port{Port: o.Port.String(), ProxyProtocol: o.ProxyProtocol, Affinity: lvsdspec.AffinityNone,
			FromConfig: fromConfig[o.Port], Clients: int32(min(pv.Clients, 1<<30)), Users: o.Users}
		if o.Affinity {
			p.Affinity, p.AffinityTimeoutNanos = lvsdspec.AffinitySource, int64(o.AffinityTimeout)
		}
		for _, b := range pv.Backends {
			p.Backends = append(p.Backends, &lvsv1.Backend{Node: b.Node, Address: b.Addr.String(), Weight: int32(b.Weight), Active: int32(min(b.Active, 1<<30))})
		}
		r.Ports = append(r.Ports, p)
	}
	for _, p := range st.Listening {
		r.Listening = append(r.Listening, p.String())
	}
	return r, nil
}

// AddPort registers a port in Consul KV.
func (a *API) AddPort(ctx context.Context, req *lvsv1.AddPortRequest) (*lvsv1.AddPortReply, error) {
	if err := requireRoot(ctx, "add"); err != nil {
		return nil, err
	}
	pc := lvsdspec.PortConfig{Port: req.GetPort(), ProxyProtocol: req.GetProxyProtocol(), Affinity: req.GetAffinity(),
		AffinityTimeout: time.Duration(req.GetAffinityTimeoutNanos()), Users: req.GetUsers()}
	o, err := pc.Options()
	if err != nil {
		var se *settings.Error
		if errors.As(err, &se) {
			return nil, status.Errorf(codes.InvalidArgument, "lvsd: %s: %q is not valid: %s", se.Key, se.Value, se.Allowed)
		}
		return nil, status.Errorf(codes.InvalidArgument, "lvsd: %v", err)
	}
	ports, fromConfig := a.s.Ports()
	for _, q := range ports {
		switch {
		case q.Port.Num != o.Port.Num:
		case q.Port.Proto != o.Port.Proto:
			return nil, status.Errorf(codes.AlreadyExists, "lvsd: port %d is registered as %s: one protocol per port", o.Port.Num, q.Port)
		case fromConfig[q.Port]:
			return nil, status.Errorf(codes.AlreadyExists, "lvsd: %s is registered in openssi.yaml (lvsd.ports): change it there", o.Port)
		case !req.GetReplace():
			return nil, status.Errorf(codes.AlreadyExists, "lvsd: %s is already registered (--replace changes its options)", o.Port)
		}
	}
	if len(ports) >= lvsdspec.MaxPorts && !slices.ContainsFunc(ports, func(q lvsdspec.Options) bool { return q.Port == o.Port }) {
		return nil, status.Errorf(codes.ResourceExhausted, "lvsd: %s: %d ports are registered already, the most there may be", o.Port, lvsdspec.MaxPorts)
	}
	if o.ProxyProtocol && a.s.cfg.IPVS {
		return nil, status.Errorf(codes.InvalidArgument, "lvsd: %s: the PROXY protocol needs the user-space proxy, and this cluster forwards with IPVS", o.Port)
	}
	// This node's view of the ports may lag behind Consul (another
	// node's ssi vip port add a moment ago): check Consul itself, and
	// write with check-and-set so that two adds never both win. Two adds
	// of tcp/N and udp/N racing may still both land: the servers keep
	// the older (mergePortsLocked).
	other := o.Port
	other.Proto = map[string]string{"tcp": "udp", "udp": "tcp"}[o.Port.Proto]
	var rec PortRecord
	if _, found, err := a.s.cfg.KV.GetConsistent(ctx, lvsdspec.KVPorts+other.Key(), &rec); err != nil && !found {
		return nil, status.Errorf(codes.Unavailable, "lvsd: registering %s: %v", o.Port, err)
	} else if found {
		return nil, status.Errorf(codes.AlreadyExists, "lvsd: port %d is registered as %s: one protocol per port", o.Port.Num, other)
	}
	index, found, err := a.s.cfg.KV.GetConsistent(ctx, lvsdspec.KVPorts+o.Port.Key(), &rec)
	if err != nil && !found {
		return nil, status.Errorf(codes.Unavailable, "lvsd: registering %s: %v", o.Port, err)
	}
	if found && !req.GetReplace() {
		return nil, status.Errorf(codes.AlreadyExists, "lvsd: %s is already registered (--replace changes its options)", o.Port)
	}
	ok, err := a.s.cfg.KV.CAS(ctx, lvsdspec.KVPorts+o.Port.Key(), RecordOf(o), index)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "lvsd: registering %s: %v", o.Port, err)
	}
	if !ok {
		return nil, status.Errorf(codes.Aborted, "lvsd: %s was changed by another ssi vip port add at the same time: try again", o.Port)
	}
	return &lvsv1.AddPortReply{}, nil
}

// RemovePort unregisters a port of Consul KV.
func (a *API) RemovePort(ctx context.Context, req *lvsv1.RemovePortRequest) (*lvsv1.RemovePortReply, error) {
	if err := requireRoot(ctx, "remove"); err != nil {
		return nil, err
	}
	p, err := lvsdspec.ParsePort(req.GetPort())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "lvsd: %v", err)
	}
	ports, fromConfig := a.s.Ports()
	found := false
	for _, q := range ports {
		found = found || q.Port == p
	}
	switch {
	case fromConfig[p]:
		return nil, status.Errorf(codes.FailedPrecondition, "lvsd: %s is registered in openssi.yaml (lvsd.ports): remove it there", p)
	case !found:
		return nil, status.Errorf(codes.NotFound, "lvsd: %s is not a registered port", p)
	}
	if err := a.s.cfg.KV.Delete(ctx, lvsdspec.KVPorts+p.Key()); err != nil {
		return nil, status.Errorf(codes.Unavailable, "lvsd: unregistering %s: %v", p, err)
	}
	return &lvsv1.RemovePortReply{}, nil
}
