package localapi

import (
	"context"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory's own, open while it is read
}

// holdBalancer never connects: a connection using it is one closed
// before gRPC took the socket Dial made (which otherwise races with the
// Close).
type holdBalancer struct{}

const holdName = "localapi-test-hold"

func (holdBalancer) Build(balancer.ClientConn, balancer.BuildOptions) balancer.Balancer {
	return holdBalancer{}
}
func (holdBalancer) Name() string                                               { return holdName }
func (holdBalancer) UpdateClientConnState(balancer.ClientConnState) error       { return nil }
func (holdBalancer) ResolverError(error)                                        {}
func (holdBalancer) UpdateSubConnState(balancer.SubConn, balancer.SubConnState) {}
func (holdBalancer) Close()                                                     {}
func (holdBalancer) ExitIdle()                                                  {}

func init() { balancer.Register(holdBalancer{}) }

// TestDialCloseLeavesNoSocket: a connection closed before gRPC took the
// socket Dial made (the first transport's) closes that socket too; it is
// not left open until the garbage collector finds the connection (with
// the collector off here, never). The listener never accepts, so every
// descriptor counted is the client's.
func TestDialCloseLeavesNoSocket(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	ln, _, err := Listen(filepath.Join(t.TempDir(), "held.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := ln.Addr().String()
	hold := grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"` + holdName + `":{}}]}`)
	for _, tc := range []struct {
		name string
		dial func() (*grpc.ClientConn, error)
	}{
		{"Dial, closed before gRPC connects", func() (*grpc.ClientConn, error) { return Dial(context.Background(), path, hold) }},
		{"DialPassing, closed before gRPC connects", func() (*grpc.ClientConn, error) {
			c, _, err := DialPassing(context.Background(), path, hold)
			return c, err
		}},
		{"Dial, closed at once", func() (*grpc.ClientConn, error) { return Dial(context.Background(), path) }},
	} {
		before := openFDs(t)
		const n = 20
		for range n {
			conn, err := tc.dial()
			if err != nil {
				t.Fatal(err)
			}
			conn.Close()
		}
		// A socket gRPC took is closed by its Close, possibly once a
		// dial under way returns: wait for those.
		got := openFDs(t)
		for deadline := time.Now().Add(5 * time.Second); got > before && time.Now().Before(deadline); got = openFDs(t) {
			time.Sleep(5 * time.Millisecond)
		}
		if got > before {
			t.Errorf("%s: %d descriptors open after %d Dial and Close, %d before: sockets left open", tc.name, got, n, before)
		}
	}
}
