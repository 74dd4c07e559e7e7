package dlm

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dlmv1 "github.com/openssi/openssi/proto/dlm/v1"
)

// State is where a lock sits on its resource's queues.
type State int

// The queues of a resource.
const (
	Granted    State = iota + 1 // holds its granted mode
	Converting                  // holds its granted mode, waits for the requested one
	Waiting                     // holds nothing yet, waits for the requested mode
)

var stateNames = [...]string{Granted: "granted", Converting: "converting", Waiting: "waiting"}

// String returns granted, converting or waiting.
func (s State) String() string {
	if s >= Granted && s <= Waiting {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Resource is one resource with locks, as its master holds it.
type Resource struct {
	Lockspace string
	Name      string
	// Master is the number of the node mastering the resource.
	Master int
	// ValueValid tells whether the value block holds a value.
	ValueValid bool
	// Locks are the resource's locks in queue order: granted, converting,
	// waiting.
	Locks []LockInfo
}

// LockInfo is one lock of a listed resource, of any session of any node.
type LockInfo struct {
	// Node and Owner are the node and session (Client.Node, Client.Owner)
	// the lock belongs to; PID is the session's process there.
	Node  int
	Owner uint64
	PID   int
	ID    uint64
	State State
	// Granted is the mode held (0 while Waiting); Requested the mode
	// waited for (0 when Granted).
	Granted, Requested Mode
	// Orphan is a Persistent lock whose session ended (see Purge).
	Orphan bool
}

// Listing is the cluster's locks as Locks found them.
type Listing struct {
	// Resources are sorted by lockspace, then name.
	Resources []Resource
	// Errors name the nodes that did not answer, whose resources are
	// missing: "node N: why".
	Errors []string
}

// ListOption narrows Locks.
type ListOption func(*dlmv1.LocksRequest)

// InLockspace lists only the resources of one lockspace.
func InLockspace(name string) ListOption {
	return func(r *dlmv1.LocksRequest) { r.Lockspace = name }
}

// locksPage is how many resources Locks asks dlmd for at a time.
const locksPage = 1000

// Locks lists the resources that have locks across the cluster, in the
// lockspaces the caller may use (root: all), with their master and their
// locks in queue order. Nodes that do not answer are named in
// Listing.Errors; the others are listed. It reads the listing a page at
// a time (so that any number of locks fits gRPC's message size); locks
// taken or released meanwhile may or may not show.
func (c *Client) Locks(ctx context.Context, opts ...ListOption) (*Listing, error) {
	req := &dlmv1.LocksRequest{}
	for _, o := range opts {
		o(req)
	}
	req.PageSize = locksPage
	out := &Listing{}
	seen := map[string]bool{}
	for {
		r, err := dlmv1.NewDlmClient(c.conn).Locks(ctx, req)
		if err != nil {
			return nil, apiErr("locks", err)
		}
		for _, e := range r.GetErrors() {
			if !seen[e] {
				seen[e] = true
				out.Errors = append(out.Errors, e)
			}
		}
		for _, res := range r.GetResources() {
			out.Resources = append(out.Resources, resourceOf(res))
		}
		if !r.GetMore() {
			return out, nil
		}
		req.PageAfterLockspace, req.PageAfterName = r.GetNextAfterLockspace(), r.GetNextAfterName()
	}
}

// resourceOf converts a listed resource.
func resourceOf(res *dlmv1.Resource) Resource {
	lr := Resource{Lockspace: res.GetLockspace(), Name: string(res.GetName()), Master: int(res.GetMaster()), ValueValid: res.GetLvbValid()}
	for _, l := range res.GetLocks() {
		lr.Locks = append(lr.Locks, LockInfo{
			Node: int(l.GetNode()), Owner: l.GetClient(), PID: int(l.GetPid()), ID: l.GetId(),
			State: State(l.GetState()), Granted: modeOf(l.GetGranted()), Requested: modeOf(l.GetRequested()),
			Orphan: l.GetOrphan(),
		})
	}
	return lr
}

// apiErr turns the error of a unary call of dlmd's local API into the
// package's errors.
func apiErr(op string, err error) error {
	switch status.Code(err) {
	case codes.PermissionDenied:
		return fmt.Errorf("dlm: %s: %w", op, errOf(dlmv1.Status_STATUS_ACCESS, status.Convert(err).Message()))
	case codes.InvalidArgument:
		return fmt.Errorf("dlm: %s: %w", op, errOf(dlmv1.Status_STATUS_INVALID, status.Convert(err).Message()))
	}
	return fmt.Errorf("dlm: %s: %w", op, err)
}
