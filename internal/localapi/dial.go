package localapi

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// ErrNotRunning is wrapped by [Dial] errors when the socket does not exist
// or nobody accepts on it: the daemon is not running.
var ErrNotRunning = errors.New("daemon not running")

// Dial connects to the local API socket at path. It first connects to
// the socket (so "not running" is reported at once, as an error wrapping
// [ErrNotRunning]), then returns a gRPC client connection that uses
// [Credentials] (the client learns the server's identity the same way)
// and that starts on that first connection, in the background: the
// connection is made once, and ready sooner for the first call. Extra
// options are appended to the defaults.
func Dial(ctx context.Context, path string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return dial(ctx, path, nil, opts)
}

// DialPassing is [Dial] for a client that passes files to a server that
// takes them ([FileCredentials]): the Passer attaches files to what the
// connection writes next.
func DialPassing(ctx context.Context, path string, opts ...grpc.DialOption) (*grpc.ClientConn, *Passer, error) {
	p := &Passer{}
	conn, err := dial(ctx, path, p, opts)
	return conn, p, err
}

func dial(ctx context.Context, path string, p *Passer, opts []grpc.DialOption) (*grpc.ClientConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if notRunning(err) {
			return nil, fmt.Errorf("localapi: dial %s: %w: %w", path, ErrNotRunning, err)
		}
		return nil, fmt.Errorf("localapi: dial %s: %w", path, err)
	}
	// gRPC's first transport is the connection just made; a later one
	// (after a broken connection) a new one.
	var mu sync.Mutex
	first := c
	// watch lasts until gRPC took the first connection (then gRPC
	// closes it) or the ClientConn was closed without taking it (then
	// the watch closes it).
	watch, taken := context.WithCancel(context.Background())
	dialer := func(ctx context.Context, _ string) (net.Conn, error) {
		mu.Lock()
		c := first
		first = nil
		mu.Unlock()
		if c == nil {
			var err error
			if c, err = d.DialContext(ctx, "unix", path); err != nil {
				return nil, err
			}
		} else {
			taken()
		}
		if p == nil {
			return c, nil
		}
		uc, ok := c.(*net.UnixConn)
		if !ok {
			c.Close()
			return nil, fmt.Errorf("localapi: dial %s: not a Unix socket", path)
		}
		pc := &passConn{UnixConn: uc}
		p.mu.Lock()
		p.conn = pc
		p.mu.Unlock()
		return pc, nil
	}
	all := append([]grpc.DialOption{grpc.WithTransportCredentials(Credentials()), grpc.WithContextDialer(dialer)}, opts...)
	conn, err := grpc.NewClient("unix://"+path, all...)
	if err != nil {
		taken()
		c.Close()
		return nil, fmt.Errorf("localapi: dial %s: %w", path, err)
	}
	conn.Connect()
	go func() {
		defer taken()
		for {
			s := conn.GetState()
			if s == connectivity.Shutdown {
				// Closed before gRPC took the first connection
				// (or after: then first is nil).
				mu.Lock()
				if first != nil {
					first.Close()
					first = nil
				}
				mu.Unlock()
				return
			}
			if !conn.WaitForStateChange(watch, s) {
				return // gRPC took it
			}
		}
	}()
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

// DialSocketPassing is [DialSocket] with [DialPassing]'s Passer.
func DialSocketPassing(ctx context.Context, set, env, def string, opts ...grpc.DialOption) (*grpc.ClientConn, *Passer, string, error) {
	socket := set
	if socket == "" {
		socket = os.Getenv(env)
	}
	if socket == "" {
		socket = def
	}
	conn, p, err := DialPassing(ctx, socket, opts...)
	return conn, p, socket, err
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
