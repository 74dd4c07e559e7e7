package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/dlmd/lockspace"
	"github.com/openssi/openssi/daemons/dlmd/node"
	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
	dlmpeerv1 "github.com/openssi/openssi/proto/dlmpeer/v1"
)

// DefaultMaxLockspacesPerUID is the default of
// Config.MaxLockspacesPerUID.
const DefaultMaxLockspacesPerUID = 64

// otherUsers reports whether name is another user's own lockspace
// (node.UserLockspace of a uid other than uid; root: never).
func otherUsers(name string, uid uint32) bool {
	return uid != 0 && strings.HasPrefix(name, "~") && !strings.HasPrefix(name, node.UserLockspace(uid, ""))
}

// shownName is the name a user gives a stored lockspace name, and whether
// it is a user's own.
func shownName(stored string) (string, bool) {
	if !strings.HasPrefix(stored, "~") {
		return stored, false
	}
	if i := strings.IndexByte(stored, '.'); i > 0 {
		return stored[i+1:], true
	}
	return stored, false
}

// checkLimit refuses a new lockspace for a non-root cred that owns
// MaxLockspacesPerUID already (node.ErrLimit: the quota, which deleting a
// lockspace frees, not a right the caller lacks).
func (a *API) checkLimit(ctx context.Context, cred lockspace.Cred) error {
	if cred.UID == 0 {
		return nil
	}
	recs, err := a.s.cfg.Lockspaces.List(ctx)
	if err != nil {
		return err
	}
	n := 0
	for _, r := range recs {
		if r.Config.UID == cred.UID {
			n++
		}
	}
	if limit := a.s.cfg.MaxLockspacesPerUID; n >= limit {
		return fmt.Errorf("dlm: uid %d owns %d lockspaces, the limit (dlmd.max_lockspaces_per_uid); delete one with ssi lockspace delete: %w", cred.UID, n, node.ErrLimit)
	}
	return nil
}

// validMode checks a mode given to create or chmod.
func validMode(mode uint32) error {
	if mode&^0o777 != 0 || mode == 0 {
		return fmt.Errorf("dlm: mode %04o: want permission bits 0001..0777 (w: take locks, r: see them listed): %w", mode, lockspace.ErrInvalid)
	}
	return nil
}

// grpcErr turns an error of the lockspace functions into a gRPC status.
func grpcErr(err error) error {
	code := codes.Internal
	switch {
	case errors.Is(err, lockspace.ErrAccess):
		code = codes.PermissionDenied
	case errors.Is(err, node.ErrLimit):
		code = codes.ResourceExhausted
	case errors.Is(err, lockspace.ErrInvalid), errors.Is(err, lockspace.ErrNameTooLong):
		code = codes.InvalidArgument
	case errors.Is(err, lockspace.ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, ErrNoLockspace):
		code = codes.NotFound
	case errors.Is(err, lockspace.ErrBusy):
		code = codes.FailedPrecondition
	}
	msg := node.WireMessage(err)
	if errors.Is(err, ErrNoLockspace) {
		msg = strings.TrimSuffix(strings.TrimSuffix(msg, ErrNoLockspace.Error()), ": ")
	}
	return status.Error(code, msg)
}

func infoOf(stored string, cfg lockspace.Config, explicit bool) *dlmv1.LockspaceInfo {
	name, own := shownName(stored)
	mode := cfg.Mode
	if mode == 0 {
		mode = lockspace.DefaultMode
	}
	return &dlmv1.LockspaceInfo{Name: name, Uid: cfg.UID, Gid: cfg.GID, Mode: mode, System: cfg.System, Own: own, Explicit: explicit}
}

// existing finds the lockspace a caller names, reading the store (not
// the cache): NotFound when there is none.
func (a *API) existing(ctx context.Context, name string, cred lockspace.Cred) (string, lockspace.Config, error) {
	if err := validFor(name, cred); err != nil {
		return "", lockspace.Config{}, err
	}
	a.forget(name)
	if cred.UID != 0 {
		a.forget(node.UserLockspace(cred.UID, name))
	}
	eff, cfg, found, err := a.find(ctx, name, cred)
	if err != nil {
		return eff, cfg, err
	}
	if !found {
		return eff, cfg, fmt.Errorf("dlm: %w", ErrNoLockspace)
	}
	return eff, cfg, nil
}

// mayAdminister: root, or the owner of a lockspace that is not the
// system's.
func mayAdminister(name string, cfg lockspace.Config, cred lockspace.Cred) error {
	if cred.UID == 0 || !cfg.System && cfg.UID == cred.UID {
		return nil
	}
	return fmt.Errorf("dlm: lockspace %q belongs to uid %d, caller is uid %d: only its owner or root may change it: %w", name, cfg.UID, cred.UID, lockspace.ErrAccess)
}

func inGroup(cred lockspace.Cred, gid uint32) bool {
	return cred.GID == gid || slices.Contains(cred.Groups, gid)
}

// CreateLockspace creates a lockspace explicitly: root's names are
// shared, a user's are its own.
func (a *API) CreateLockspace(ctx context.Context, r *dlmv1.CreateLockspaceRequest) (*dlmv1.LockspaceInfo, error) {
	_, cred, err := credOf(ctx)
	if err != nil {
		return nil, err
	}
	name := r.GetName()
	if err := validFor(name, cred); err != nil {
		return nil, grpcErr(err)
	}
	if err := ValidLockspace(name); err != nil {
		return nil, grpcErr(err)
	}
	cfg := lockspace.Config{UID: cred.UID, GID: cred.GID, Mode: lockspace.DefaultMode, System: strings.HasPrefix(name, SystemPrefix)}
	if r.GetMode() != 0 {
		if err := validMode(r.GetMode()); err != nil {
			return nil, grpcErr(err)
		}
		cfg.Mode = r.GetMode()
	}
	if r.GetHasGid() {
		if cred.UID != 0 && !inGroup(cred, r.GetGid()) {
			return nil, grpcErr(fmt.Errorf("dlm: group %d is not one of the caller's: %w", r.GetGid(), lockspace.ErrAccess))
		}
		cfg.GID = r.GetGid()
	}
	eff := name
	if cred.UID != 0 {
		if cfg.System {
			return nil, grpcErr(lockspace.Config{System: true}.CheckAccess(name, cred))
		}
		eff = node.UserLockspace(cred.UID, name)
		if _, found, err := a.s.cfg.Lockspaces.Lookup(ctx, eff); err != nil || found {
			return nil, createErr(err)
		}
		if err := a.checkLimit(ctx, cred); err != nil {
			return nil, grpcErr(err)
		}
	}
	if err := a.s.cfg.Lockspaces.Create(ctx, eff, cfg, true); err != nil {
		return nil, createErr(err)
	}
	a.remember(eff, cfg)
	return infoOf(eff, cfg, true), nil
}

// createErr is the error of a create that failed (err) or found the
// record there (nil).
func createErr(err error) error {
	if err == nil || errors.Is(err, lockspace.ErrExists) {
		return grpcErr(fmt.Errorf("dlm: %w", lockspace.ErrExists))
	}
	return grpcErr(err)
}

// ChmodLockspace sets a lockspace's mode: its owner or root.
func (a *API) ChmodLockspace(ctx context.Context, r *dlmv1.ChmodLockspaceRequest) (*dlmv1.LockspaceInfo, error) {
	_, cred, err := credOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := validMode(r.GetMode()); err != nil {
		return nil, grpcErr(err)
	}
	return a.update(ctx, r.GetName(), cred, func(cfg *lockspace.Config) error {
		cfg.Mode = r.GetMode()
		return nil
	})
}

// ChownLockspace sets a lockspace's owner and group as chown(2): only
// root gives a lockspace away; its owner may set the group to one of its
// own groups.
func (a *API) ChownLockspace(ctx context.Context, r *dlmv1.ChownLockspaceRequest) (*dlmv1.LockspaceInfo, error) {
	_, cred, err := credOf(ctx)
	if err != nil {
		return nil, err
	}
	name := r.GetName()
	return a.update(ctx, name, cred, func(cfg *lockspace.Config) error {
		if r.GetHasUid() && r.GetUid() != cfg.UID {
			if cred.UID != 0 {
				return fmt.Errorf("dlm: to uid %d: only root may give a lockspace away: %w", r.GetUid(), lockspace.ErrAccess)
			}
			cfg.UID = r.GetUid()
		}
		if r.GetHasGid() && r.GetGid() != cfg.GID {
			if cred.UID != 0 && !inGroup(cred, r.GetGid()) {
				return fmt.Errorf("dlm: group %d is not one of the caller's: %w", r.GetGid(), lockspace.ErrAccess)
			}
			cfg.GID = r.GetGid()
		}
		return nil
	})
}

// update changes the record of the lockspace a caller names, which it
// must administer.
func (a *API) update(ctx context.Context, name string, cred lockspace.Cred, change func(*lockspace.Config) error) (*dlmv1.LockspaceInfo, error) {
	eff, cfg, err := a.existing(ctx, name, cred)
	if err != nil {
		return nil, grpcErr(err)
	}
	if err := mayAdminister(name, cfg, cred); err != nil {
		return nil, grpcErr(err)
	}
	rec, err := a.s.cfg.Lockspaces.Update(ctx, eff, func(c *lockspace.Config) error {
		if err := mayAdminister(name, *c, cred); err != nil {
			return err
		}
		return change(c)
	})
	if err != nil {
		return nil, grpcErr(err)
	}
	a.remember(eff, rec.Config)
	return infoOf(eff, rec.Config, rec.Explicit), nil
}

// DeleteLockspace removes a lockspace's record: its owner or root, and
// only while no lock exists in it anywhere in the cluster.
func (a *API) DeleteLockspace(ctx context.Context, r *dlmv1.DeleteLockspaceRequest) (*dlmv1.DeleteLockspaceReply, error) {
	_, cred, err := credOf(ctx)
	if err != nil {
		return nil, err
	}
	name := r.GetName()
	eff, cfg, err := a.existing(ctx, name, cred)
	if err != nil {
		return nil, grpcErr(err)
	}
	if err := mayAdminister(name, cfg, cred); err != nil {
		return nil, grpcErr(err)
	}
	n, err := a.countLocks(ctx, eff)
	if err != nil {
		return nil, status.Error(codes.Unavailable, fmt.Sprintf("cannot tell whether it has locks: %v", err))
	}
	if n > 0 {
		return nil, grpcErr(fmt.Errorf("dlm: %d resources have locks; release them (or purge orphans) first: %w", n, lockspace.ErrBusy))
	}
	if err := a.s.cfg.Lockspaces.Delete(ctx, eff); err != nil {
		return nil, grpcErr(err)
	}
	a.forget(eff)
	return &dlmv1.DeleteLockspaceReply{}, nil
}

// countLocks counts the resources with locks in a stored lockspace, on
// every member; an unreachable member is an error.
func (a *API) countLocks(ctx context.Context, eff string) (int, error) {
	s := a.s
	var members []uint32
	n := 0
	if err := s.call(ctx, func() {
		members = s.core.Members()
		n = withLocks(s.core.Dump(eff))
	}); err != nil {
		return 0, err
	}
	for _, m := range members {
		if m == s.self {
			continue
		}
		c, err := s.conn(ctx, m)
		if err != nil {
			return 0, fmt.Errorf("node %d: %w", m, err)
		}
		d, err := dlmpeerv1.NewPeerClient(c).Dump(ctx, &dlmpeerv1.DumpRequest{Lockspace: eff})
		if err != nil {
			return 0, fmt.Errorf("node %d: %w", m, err)
		}
		n += withLocks(d.GetResources())
	}
	return n, nil
}

// withLocks counts the resources that have locks (a master keeps an
// unused one for a while).
func withLocks(rs []*dlmv1.Resource) int {
	n := 0
	for _, r := range rs {
		if len(r.GetLocks()) > 0 {
			n++
		}
	}
	return n
}

// ListLockspaces lists the lockspaces the caller owns, or may use or see
// (root: all); another user's own lockspaces are never shown to a user.
func (a *API) ListLockspaces(ctx context.Context, _ *dlmv1.ListLockspacesRequest) (*dlmv1.ListLockspacesReply, error) {
	_, cred, err := credOf(ctx)
	if err != nil {
		return nil, err
	}
	recs, err := a.s.cfg.Lockspaces.List(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	reply := &dlmv1.ListLockspacesReply{}
	for _, r := range recs {
		if cred.UID != 0 && (otherUsers(r.Name, cred.UID) || r.Config.UID != cred.UID && !r.Config.Can(cred, lockspace.PermRead)) {
			continue
		}
		reply.Lockspaces = append(reply.Lockspaces, infoOf(r.Name, r.Config, r.Explicit))
	}
	slices.SortFunc(reply.Lockspaces, func(x, y *dlmv1.LockspaceInfo) int {
		if c := strings.Compare(x.GetName(), y.GetName()); c != 0 {
			return c
		}
		return cmp.Compare(x.GetUid(), y.GetUid())
	})
	return reply, nil
}
