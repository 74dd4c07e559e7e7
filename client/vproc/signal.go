package vproc

import (
	"context"
	"errors"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vprocv1 "github.com/openssi/openssi/proto/vproc/v1"
)

// Errors of Kill, KillGroup and Renice besides the package's others
// (ErrNoNode: the node that answers for the cpid is DOWN; ErrUnreachable,
// ErrNotRunning, ErrRefused: a bad signal or nice value).
var (
	// ErrNoProcess: no process has that cpid (or no process is in that
	// group).
	ErrNoProcess = errors.New("no such process")
	// ErrPermission: the caller may signal or renice only its own
	// processes (root any), and raise a priority only as root.
	ErrPermission = errors.New("permission denied")
)

// Kill sends sig to the process cpid, wherever it runs, as the calling
// process's user (read by vprocd from its socket).
func (c *Client) Kill(ctx context.Context, cpid int64, sig syscall.Signal) error {
	_, err := c.kill(ctx, &vprocv1.KillRequest{Cpid: cpid, Signal: int32(sig)})
	return err
}

// KillGroup sends sig to every process of the cluster process group
// cpgid on every node (kill -- -CPGID) that the caller may signal, and
// returns how many it signaled. The processes started by `ssi exec` (or
// Exec) from one process group on a node are in the group named by the
// cpid of that group's leader.
func (c *Client) KillGroup(ctx context.Context, cpgid int64, sig syscall.Signal) (int, error) {
	r, err := c.kill(ctx, &vprocv1.KillRequest{Cpid: cpgid, Group: true, Signal: int32(sig)})
	if err != nil {
		return 0, err
	}
	return int(r.Signaled), nil
}

func (c *Client) kill(ctx context.Context, req *vprocv1.KillRequest) (*vprocv1.KillReply, error) {
	r, err := vprocv1.NewVprocSignalClient(c.conn).Kill(ctx, req)
	if err != nil {
		return nil, c.wrapSignal(err)
	}
	return r, nil
}

// Renice sets the nice value of the process cpid, wherever it runs, and
// returns the value it had.
func (c *Client) Renice(ctx context.Context, cpid int64, nice int) (old int, err error) {
	r, err := vprocv1.NewVprocSignalClient(c.conn).Renice(ctx, &vprocv1.ReniceRequest{Cpid: cpid, Nice: int32(nice)})
	if err != nil {
		return 0, c.wrapSignal(err)
	}
	return int(r.OldNice), nil
}

// wrapSignal is wrap with the errors of a process that is not there or
// not the caller's.
func (c *Client) wrapSignal(err error) error {
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.NotFound:
			return wrapped{st.Message(), ErrNoProcess}
		case codes.PermissionDenied:
			return wrapped{st.Message(), ErrPermission}
		}
	}
	return c.wrap(err)
}
