package server

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/keepalived/decl"
	"github.com/openssi/openssi/daemons/keepalived/keepalivedspec"
	"github.com/openssi/openssi/internal/consul"
	"github.com/openssi/openssi/internal/localapi"
	keepalivev1 "github.com/openssi/openssi/proto/keepalive/v1"
)

// API is the local API on openssi-keepalived's socket. Reading is open
// to every local user; changes are root's (SO_PEERCRED).
type API struct {
	keepalivev1.UnimplementedKeepaliveServer
	m *Manager
}

// NewAPI returns the local API of m.
func NewAPI(m *Manager) *API { return &API{m: m} }

// Register adds the service to a gRPC server.
func (a *API) Register(g *grpc.Server) { keepalivev1.RegisterKeepaliveServer(g, a) }

func requireRoot(ctx context.Context, what string) error {
	c, ok := localapi.CallerFrom(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "keepalived: caller credentials unavailable")
	}
	if c.UID != 0 {
		return status.Errorf(codes.PermissionDenied, "keepalived: ssi keepalive %s: only root may change the monitored applications (uid %d)", what, c.UID)
	}
	return nil
}

// FromProto turns the wire form into a declaration (defaults not filled).
func FromProto(p *keepalivev1.App) decl.Decl {
	return decl.Decl{
		Name: p.GetName(), Command: p.GetCommand(), User: p.GetUser(), Primary: p.GetPrimary(), Backups: p.GetBackups(),
		Placement: p.GetPlacement(), Retries: int(p.GetRetries()), Within: time.Duration(p.GetWithinNanos()),
		Check: p.GetCheck(), CheckInterval: time.Duration(p.GetCheckIntervalNanos()),
	}
}

// ToProto is the wire form of d.
func ToProto(d decl.Decl) *keepalivev1.App {
	return &keepalivev1.App{
		Name: d.Name, Command: d.Command, User: d.User, Primary: d.Primary, Backups: d.Backups, Placement: d.Placement,
		Retries: int32(min(d.Retries, decl.MaxRetries+1)), WithinNanos: int64(d.Within), Check: d.Check, CheckIntervalNanos: int64(d.CheckInterval),
	}
}

// Add registers an application in Consul KV.
func (a *API) Add(ctx context.Context, req *keepalivev1.AddRequest) (*keepalivev1.AddReply, error) {
	if err := requireRoot(ctx, "add"); err != nil {
		return nil, err
	}
	d := FromProto(req.GetApp())
	d.Defaults()
	if err := d.Validate(); err != nil {
		var fe *decl.FieldError
		if errors.As(err, &fe) {
			if fe.Field == "" {
				return nil, status.Errorf(codes.InvalidArgument, "keepalived: %s", fe.Msg)
			}
			return nil, status.Errorf(codes.InvalidArgument, "keepalived: %s: %s", flagOf(fe.Field), fe.Msg)
		}
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	for _, n := range append([]uint32{d.Primary}, d.Backups...) {
		if n != 0 && !a.m.Known(n) {
			return nil, status.Errorf(codes.InvalidArgument, "keepalived: node %d is not a member of the cluster", n)
		}
	}
	if path, ok := a.m.File(d.Name); ok {
		return nil, status.Errorf(codes.AlreadyExists, "keepalived: %s is declared by %s on this node: edit that file instead", d.Name, path)
	}
	var old decl.Decl
	index, found, err := a.m.cfg.KV.GetConsistent(ctx, keepalivedspec.KVApps+d.Name, &old)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "keepalived: %v", err)
	}
	if found && !req.GetReplace() {
		return nil, status.Errorf(codes.AlreadyExists, "keepalived: %s is already registered (ssi keepalive remove %s first)", d.Name, d.Name)
	}
	d.Source = ""
	ok, err := a.m.cfg.KV.CAS(ctx, keepalivedspec.KVApps+d.Name, d, index)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "keepalived: %v", err)
	}
	if !ok {
		return nil, status.Errorf(codes.Aborted, "keepalived: %s was registered meanwhile: try again", d.Name)
	}
	return &keepalivev1.AddReply{}, nil
}

// flagOf names a declaration field as ssi keepalive add's option.
func flagOf(field string) string {
	switch field {
	case "command":
		return "the command (after --)"
	case "check_interval":
		return "--check-interval"
	}
	return "--" + field
}

// Remove stops and forgets a registered application.
func (a *API) Remove(ctx context.Context, req *keepalivev1.RemoveRequest) (*keepalivev1.RemoveReply, error) {
	if err := requireRoot(ctx, "remove"); err != nil {
		return nil, err
	}
	name := req.GetName()
	if err := decl.CheckName(name); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if path, ok := a.m.File(name); ok {
		return nil, status.Errorf(codes.FailedPrecondition, "keepalived: %s is declared by %s: remove that file on every node", name, path)
	}
	var d decl.Decl
	_, found, err := a.m.cfg.KV.GetConsistent(ctx, keepalivedspec.KVApps+name, &d)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "keepalived: %v", err)
	}
	if !found {
		return nil, status.Errorf(codes.NotFound, "keepalived: no application %s is registered", name)
	}
	keys := []string{keepalivedspec.KVApps + name, keepalivedspec.KVMoves + name, keepalivedspec.KVRun + name}
	if ents, _, err := a.m.cfg.KV.List(ctx, keepalivedspec.KVUnfit+name+"/", consul.Wait{}); err == nil {
		for _, e := range ents {
			keys = append(keys, e.Key)
		}
	}
	for _, k := range keys {
		if err := a.m.cfg.KV.Delete(ctx, k); err != nil {
			return nil, status.Errorf(codes.Unavailable, "keepalived: %v", err)
		}
	}
	return &keepalivev1.RemoveReply{}, nil
}

// Move asks the node running an application to hand it to another.
func (a *API) Move(ctx context.Context, req *keepalivev1.MoveRequest) (*keepalivev1.MoveReply, error) {
	if err := requireRoot(ctx, "move"); err != nil {
		return nil, err
	}
	name, to := req.GetName(), req.GetNode()
	st, _ := a.m.List(name)
	if len(st) == 0 {
		return nil, status.Errorf(codes.NotFound, "keepalived: no application %s is declared", name)
	}
	d, run := st[0].Decl, st[0].Run
	switch {
	case !a.m.Up(to):
		return nil, status.Errorf(codes.FailedPrecondition, "keepalived: node %d is not UP", to)
	case (d.Primary != 0 || len(d.Backups) > 0) && d.Primary != to && !contains(d.Backups, to):
		return nil, status.Errorf(codes.FailedPrecondition, "keepalived: node %d is neither %s's primary nor one of its backups", to, name)
	case run.Node == 0 || !a.m.Up(run.Node):
		return nil, status.Errorf(codes.FailedPrecondition, "keepalived: %s runs on no UP node now", name)
	}
	var why Unfit
	if _, found, err := a.m.cfg.KV.Get(ctx, fmt.Sprintf("%s%s/%d", keepalivedspec.KVUnfit, name, to), &why); err == nil && found {
		return nil, status.Errorf(codes.FailedPrecondition, "keepalived: node %d cannot run %s: %s", to, name, why.Why)
	}
	if err := a.m.cfg.KV.Put(ctx, keepalivedspec.KVMoves+name, MoveRequest{To: to, At: time.Now()}); err != nil {
		return nil, status.Errorf(codes.Unavailable, "keepalived: %v", err)
	}
	return &keepalivev1.MoveReply{From: run.Node}, nil
}

func contains(l []uint32, n uint32) bool {
	for _, x := range l {
		if x == n {
			return true
		}
	}
	return false
}

// List returns the applications and where each runs.
func (a *API) List(ctx context.Context, req *keepalivev1.ListRequest) (*keepalivev1.ListReply, error) {
	st, errs := a.m.List(req.GetName())
	if req.GetName() != "" && len(st) == 0 {
		return nil, status.Errorf(codes.NotFound, "keepalived: no application %s is declared", req.GetName())
	}
	unfit := a.unfit(ctx)
	r := &keepalivev1.ListReply{Errors: errs, ThisNode: a.m.cfg.Self}
	for _, s := range st {
		p := &keepalivev1.Status{App: ToProto(s.Decl), Source: s.Source, Node: s.Run.Node, State: s.Run.State, Restarts: s.Run.Restarts,
			Message: s.Run.Message, GaveUp: s.Run.GaveUp}
		if !s.Run.Since.IsZero() {
			p.SinceUnixNanos = s.Run.Since.UnixNano()
		}
		if p.Node != 0 && !a.m.Up(p.Node) {
			p.State = fmt.Sprintf("node %d is not UP (was %s)", p.Node, p.State)
		}
		if p.Node == 0 {
			p.State = "not running"
			if why := unfit[s.Decl.Name]; why != "" {
				p.Message = why
			}
		}
		r.Apps = append(r.Apps, p)
	}
	return r, nil
}

// unfit reads why nodes cannot run applications: name -> "node N: why; ...".
func (a *API) unfit(ctx context.Context) map[string]string {
	ents, _, err := a.m.cfg.KV.List(ctx, keepalivedspec.KVUnfit, consul.Wait{})
	out := map[string]string{}
	if err != nil {
		return out
	}
	for _, e := range ents {
		rest := strings.TrimPrefix(e.Key, keepalivedspec.KVUnfit)
		name, node, ok := strings.Cut(rest, "/")
		if _, err := strconv.Atoi(node); !ok || err != nil {
			continue
		}
		var u Unfit
		if e.Decode(&u) != nil {
			continue
		}
		if out[name] != "" {
			out[name] += "; "
		}
		out[name] += "node " + node + ": " + u.Why
	}
	return out
}
