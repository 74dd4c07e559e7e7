package dlm

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// Errors of the lockspace administration calls (errors.Is).
var (
	// ErrNoLockspace: no lockspace of that name (for the caller: its own,
	// or a shared one).
	ErrNoLockspace = errors.New("no such lockspace")
	// ErrLockspaceExists: CreateLockspace of a name that exists.
	ErrLockspaceExists = errors.New("lockspace exists")
	// ErrLockspaceInUse: DeleteLockspace of a lockspace with locks.
	ErrLockspaceInUse = errors.New("lockspace has locks")
	// ErrTooManyLockspaces: the caller's uid owns dlmd.max_lockspaces_per_uid
	// lockspaces already (CreateLockspace; the error matches ErrLimit
	// too, as a Lock that would create one fails with). Delete one
	// (DeleteLockspace, `ssi lockspace delete`) to make room.
	ErrTooManyLockspaces = errors.New("too many lockspaces")
)

// LockspaceInfo is a lockspace's record.
//
// Who may use a lockspace is decided as for a file: the caller's class
// is owner (its uid is UID), else group (its gid or a supplementary group
// is GID), else other; in the class's bits of Mode, w (2) lets it take
// locks in any mode and purge its own orphans, r (4) see the lockspace's
// locks in Locks. Root may do everything.
//
// Names are not squatted: a name root creates or first uses is shared;
// a user's are its own (Own), which no other user can reach, unless a
// shared lockspace of that name existed first.
type LockspaceInfo struct {
	Name     string
	UID, GID uint32
	// Mode holds the permission bits (0o777).
	Mode uint32
	// System: a root-only lockspace (openssi.*).
	System bool
	// Own: the lockspace is its owner's own, not shared.
	Own bool
	// Explicit: made by CreateLockspace, kept until deleted (a lockspace
	// made on first use may be removed once unused).
	Explicit bool
}

func infoOf(i *dlmv1.LockspaceInfo) LockspaceInfo {
	return LockspaceInfo{Name: i.GetName(), UID: i.GetUid(), GID: i.GetGid(), Mode: i.GetMode(), System: i.GetSystem(), Own: i.GetOwn(), Explicit: i.GetExplicit()}
}

// CreateOption sets a property of a lockspace CreateLockspace makes.
type CreateOption func(*dlmv1.CreateLockspaceRequest)

// WithGroup makes gid the lockspace's group (one of the caller's groups;
// root: any). The default is the caller's gid.
func WithGroup(gid uint32) CreateOption {
	return func(r *dlmv1.CreateLockspaceRequest) { r.Gid, r.HasGid = gid, true }
}

// WithMode sets the permission bits (0001..0777; default 0660).
func WithMode(mode uint32) CreateOption {
	return func(r *dlmv1.CreateLockspaceRequest) { r.Mode = mode }
}

// CreateLockspace creates a lockspace that stays until deleted. Root's
// is shared; a user's is its own.
func (c *Client) CreateLockspace(ctx context.Context, name string, opts ...CreateOption) (LockspaceInfo, error) {
	req := &dlmv1.CreateLockspaceRequest{Name: name}
	for _, o := range opts {
		o(req)
	}
	r, err := dlmv1.NewDlmClient(c.conn).CreateLockspace(ctx, req)
	if err != nil {
		return LockspaceInfo{}, adminErr("create lockspace "+showName(name), err)
	}
	return infoOf(r), nil
}

// ChmodLockspace sets a lockspace's permission bits (its owner or root).
func (c *Client) ChmodLockspace(ctx context.Context, name string, mode uint32) (LockspaceInfo, error) {
	r, err := dlmv1.NewDlmClient(c.conn).ChmodLockspace(ctx, &dlmv1.ChmodLockspaceRequest{Name: name, Mode: mode})
	if err != nil {
		return LockspaceInfo{}, adminErr("chmod lockspace "+showName(name), err)
	}
	return infoOf(r), nil
}

// ChownLockspace sets a lockspace's owner and group as chown(2) does; -1
// leaves one unchanged. Only root gives a lockspace to another uid; its
// owner may set the group to one of its own groups.
func (c *Client) ChownLockspace(ctx context.Context, name string, uid, gid int64) (LockspaceInfo, error) {
	req := &dlmv1.ChownLockspaceRequest{Name: name}
	if uid >= 0 {
		req.Uid, req.HasUid = uint32(uid), true
	}
	if gid >= 0 {
		req.Gid, req.HasGid = uint32(gid), true
	}
	r, err := dlmv1.NewDlmClient(c.conn).ChownLockspace(ctx, req)
	if err != nil {
		return LockspaceInfo{}, adminErr("chown lockspace "+showName(name), err)
	}
	return infoOf(r), nil
}

// DeleteLockspace removes a lockspace (its owner or root). It is refused
// with ErrLockspaceInUse while any node has a lock in it.
func (c *Client) DeleteLockspace(ctx context.Context, name string) error {
	if _, err := dlmv1.NewDlmClient(c.conn).DeleteLockspace(ctx, &dlmv1.DeleteLockspaceRequest{Name: name}); err != nil {
		return adminErr("delete lockspace "+showName(name), err)
	}
	return nil
}

// ListLockspaces lists the lockspaces the caller owns or may see (root:
// all), by name.
func (c *Client) ListLockspaces(ctx context.Context) ([]LockspaceInfo, error) {
	r, err := dlmv1.NewDlmClient(c.conn).ListLockspaces(ctx, &dlmv1.ListLockspacesRequest{})
	if err != nil {
		return nil, adminErr("list lockspaces", err)
	}
	out := make([]LockspaceInfo, 0, len(r.GetLockspaces()))
	for _, i := range r.GetLockspaces() {
		out = append(out, infoOf(i))
	}
	return out, nil
}

// adminErr maps an administration call's error to the package's errors.
func adminErr(op string, err error) error {
	var sentinel error
	switch status.Code(err) {
	case codes.NotFound:
		sentinel = ErrNoLockspace
	case codes.AlreadyExists:
		sentinel = ErrLockspaceExists
	case codes.FailedPrecondition:
		sentinel = ErrLockspaceInUse
	case codes.ResourceExhausted:
		sentinel = ErrTooManyLockspaces
	default:
		return apiErr(op, err)
	}
	msg := status.Convert(err).Message()
	if sentinel == ErrTooManyLockspaces {
		return limitErr{fmt.Errorf("dlm: %s: %w: %s", op, sentinel, msg)}
	}
	if msg != "" {
		return fmt.Errorf("dlm: %s: %w: %s", op, sentinel, msg)
	}
	return fmt.Errorf("dlm: %s: %w", op, sentinel)
}

// limitErr is an error that is also ErrLimit (errors.Is) without saying
// so in its text.
type limitErr struct{ error }

func (e limitErr) Unwrap() []error { return []error{e.error, ErrLimit} }
