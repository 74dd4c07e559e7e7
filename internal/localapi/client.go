package localapi

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Daemon describes a daemon's local API to its client library: how the
// library names itself and the daemon, and the library's sentinel errors
// for what the daemon answers.
type Daemon struct {
	// Prefix starts the library's own errors, e.g. "lvs".
	Prefix string
	// Unit is the daemon's systemd unit, e.g. "openssi-lvsd".
	Unit string
	// Says starts the daemon's own messages, e.g. "lvsd:": an
	// Unavailable status with it is the daemon's (it could not reach
	// something), one without it the connection's (the daemon is gone).
	Says string
	// NotRunning, Permission, Refused and Unavailable are the library's
	// sentinels: no daemon here; PermissionDenied or Unauthenticated;
	// InvalidArgument, FailedPrecondition, NotFound or one of
	// RefusedToo; the daemon's own Unavailable.
	NotRunning, Permission, Refused, Unavailable error
	RefusedToo                                   []codes.Code
}

// Dial is DialSocket for the library of d, whose error for a daemon that
// does not answer says how to start it.
func (d Daemon) Dial(ctx context.Context, set, env, def string, opts ...grpc.DialOption) (*grpc.ClientConn, string, error) {
	conn, socket, err := DialSocket(ctx, set, env, def, opts...)
	if err != nil {
		if IsUnavailable(err) {
			return nil, socket, fmt.Errorf("%s: %w (no answer on %s): start it with `systemctl start %s`", d.Prefix, d.NotRunning, socket, d.Unit)
		}
		return nil, socket, fmt.Errorf("%s: %w", d.Prefix, err)
	}
	return conn, socket, nil
}

// Wrap turns an error of a call to the daemon on socket into the
// library's: the daemon's message (which has its prefix) marked with the
// sentinel of its status; nil stays nil.
func (d Daemon) Wrap(err error, socket string) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", d.Prefix, err)
	}
	msg := st.Message()
	switch c := st.Code(); {
	case c == codes.PermissionDenied || c == codes.Unauthenticated:
		return Marked{msg, d.Permission}
	case c == codes.InvalidArgument || c == codes.FailedPrecondition || c == codes.NotFound || slices.Contains(d.RefusedToo, c):
		return Marked{msg, d.Refused}
	case c == codes.Unavailable:
		if strings.HasPrefix(msg, d.Says) {
			return Marked{msg, d.Unavailable}
		}
		return fmt.Errorf("%s: %w (%s): %s", d.Prefix, d.NotRunning, socket, msg)
	}
	return fmt.Errorf("%s: %s", d.Prefix, msg)
}

// Marked is a daemon's message marked as one of a library's sentinels
// (errors.Is).
type Marked struct {
	Msg string
	Err error
}

func (m Marked) Error() string { return m.Msg }
func (m Marked) Unwrap() error { return m.Err }
