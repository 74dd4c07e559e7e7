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
