package localapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrNotRunning is wrapped by [Dial] errors when the socket does not exist
// or nobody accepts on it: the daemon is not running.
var ErrNotRunning = errors.New("daemon not running")

// Dial connects to the local API socket at path. It first checks that a
// daemon accepts on the socket (so "not running" is reported at once, as
// an error wrapping [ErrNotRunning]), then returns a gRPC client connection
// that uses [Credentials] (the client learns the server's identity the
// same way). Extra options are appended to the defaults.
func Dial(ctx context.Context, path string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if notRunning(err) {
			return nil, fmt.Errorf("localapi: dial %s: %w: %w", path, ErrNotRunning, err)
		}
		return nil, fmt.Errorf("localapi: dial %s: %w", path, err)
	}
	_ = c.Close()
	all := append([]grpc.DialOption{grpc.WithTransportCredentials(Credentials())}, opts...)
	conn, err := grpc.NewClient("unix://"+path, all...)
	if err != nil {
		return nil, fmt.Errorf("localapi: dial %s: %w", path, err)
	}
	return conn, nil
}

// DialSocket is Dial for a client library: it dials the socket an option
// set (set), else the one the environment variable env names, else def,
// and returns the socket it dialled for the caller's error messages. opts
// are Dial's.
func DialSocket(ctx context.Context, set, env, def string, opts ...grpc.DialOption) (*grpc.ClientConn, string, error) {
	socket := set
	if socket == "" {
		socket = os.Getenv(env)
	}
	if socket == "" {
		socket = def
	}
	conn, err := Dial(ctx, socket, opts...)
	return conn, socket, err
}

func notRunning(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// IsUnavailable reports whether err means the daemon is not running: an
// error from [Dial] wrapping [ErrNotRunning], a raw ENOENT/ECONNREFUSED, or
// a gRPC Unavailable status from a call on a connection whose daemon went
// away.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrNotRunning) || notRunning(err) {
		return true
	}
	s, ok := status.FromError(err)
	return ok && s.Code() == codes.Unavailable
}
