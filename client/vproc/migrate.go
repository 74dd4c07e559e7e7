package vproc

import (
	"context"
	"errors"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// Errors of Migrate besides Kill's (ErrNoProcess, ErrPermission: only
// its owner or root may move a process).
var (
	// ErrNotMigratable: the process cannot move (not started with
	// Cmd.Migratable, not connected to its checkpoint socket, or the
	// node is not UP or is where it runs).
	ErrNotMigratable = errors.New("cannot move")
	// ErrMoveFailed: the move was tried and failed; the process runs on
	// where it was.
	ErrMoveFailed = errors.New("the move failed")
)

// Migrate moves the process cpid to node (`ssi migrate`), keeping its
// cpid and the stdio of the Exec that started it, and returns once it
// runs there. An error leaves it running where it was and says why in one
// line.
func (c *Client) Migrate(ctx context.Context, cpid int64, node int) error {
	if node <= 0 {
		return wrapped{"vproc: node " + strconv.Itoa(node) + " is not a node number", ErrNoNode}
	}
	_, err := vprocv1.NewVprocMigrateClient(c.conn).Migrate(ctx, &vprocv1.MigrateRequest{Cpid: cpid, Node: uint32(node)})
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.FailedPrecondition:
			return wrapped{st.Message(), ErrNotMigratable}
		case codes.Aborted:
			return wrapped{st.Message(), ErrMoveFailed}
		}
	}
	return c.wrapSignal(err)
}

// CRIU is CRIU's state on a node, as its vprocd found it at start: whether
// it moves programs that do not speak the cooperative protocol there.
type CRIU struct {
	// Status is "ready", "missing", "broken", "too-old" or
	// "check-failed".
	Status string `json:"status"`
	// Path is the binary's path ("" when missing).
	Path string `json:"path,omitempty"`
	// Version is its version, "4.2.1" ("" when missing or broken).
	Version string `json:"version,omitempty"`
	// Reason says why it is not ready ("" when ready).
	Reason string `json:"reason,omitempty"`
}

// Ready reports whether CRIU moves unmodified programs on the node.
func (c CRIU) Ready() bool { return c.Status == "ready" }

// String is one line: "ready: criu 4.2.1 at /usr/sbin/criu", or the
// status, what is known of the binary and why it is not ready.
func (c CRIU) String() string {
	s := c.Status
	if c.Version != "" {
		s += ": criu " + c.Version
		if c.Path != "" {
			s += " at " + c.Path
		}
	} else if c.Path != "" {
		s += ": " + c.Path
	}
	if c.Reason != "" {
		s += ": " + c.Reason
	}
	return s
}

// CRIU asks this node's vprocd for the state of CRIU it found at start.
func (c *Client) CRIU(ctx context.Context) (CRIU, error) {
	r, err := vprocv1.NewVprocMigrateClient(c.conn).Mechanisms(ctx, &vprocv1.MechanismsRequest{})
	if err != nil {
		return CRIU{}, c.wrap(err)
	}
	s := r.GetCriu()
	return CRIU{Status: s.GetStatus(), Path: s.GetPath(), Version: s.GetVersion(), Reason: s.GetReason()}, nil
}
