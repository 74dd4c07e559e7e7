package server

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/internal/localapi"
)

// asUID is the local API's transport credentials with the caller's uid and
// gid replaced, so that a test running as root can call as another user.
type asUID struct {
	credentials.TransportCredentials
	uid, gid uint32
}

func (a asUID) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := a.TransportCredentials.ServerHandshake(conn)
	if ai, ok := info.(localapi.AuthInfo); ok {
		ai.Cred.UID, ai.Cred.GID, ai.Cred.Groups = a.uid, a.gid, nil
		info = ai
	}
	return conn, info, err
}

// userClient opens a session on node as uid (gid the same), through a
// local API socket of its own.
func (c *testCluster) userClient(ctx context.Context, node, uid uint32) *dlm.Client {
	c.t.Helper()
	return c.userGroupClient(ctx, node, uid, uid)
}

// userSocket serves node's local API to callers taken for uid and gid, on
// a socket of its own, and returns its path.
func (c *testCluster) userSocket(node, uid, gid uint32) string {
	c.t.Helper()
	socket := filepath.Join(c.t.TempDir(), "user.sock")
	ln, _, err := localapi.Listen(socket, "")
	if err != nil {
		c.t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(asUID{TransportCredentials: localapi.Credentials(), uid: uid, gid: gid}))
	NewAPI(c.nodes[node].srv).Register(g)
	go func() { _ = g.Serve(ln) }()
	c.t.Cleanup(g.Stop)
	return socket
}

// userGroupClient opens a session on node as uid and gid.
func (c *testCluster) userGroupClient(ctx context.Context, node, uid, gid uint32) *dlm.Client {
	c.t.Helper()
	cl, err := dlm.New(ctx, dlm.WithSocket(c.userSocket(node, uid, gid)))
	if err != nil {
		c.t.Fatalf("session on node %d as uid %d: %v", node, uid, err)
	}
	c.t.Cleanup(func() { _ = cl.Close() })
	return cl
}

// TestRefusalsReadOnce: a refused request's error, as the client library
// returns it, says "dlm:" once, names the operation, the reason and the
// detail once each, and still matches its sentinel with errors.Is across
// the gRPC boundary.
func TestRefusalsReadOnce(t *testing.T) {
	c := startCluster(t, 2, clusterOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	root := c.client(ctx, 1)
	l, err := root.Lock(ctx, "x", "r", dlm.EX)
	if err != nil {
		t.Fatal(err)
	}
	user := c.userClient(ctx, 1, 1000)
	_, lockErr := user.Lock(ctx, "x", "r", dlm.PR)
	_, sysErr := user.Lock(ctx, "openssi.sys", "r", dlm.PR)
	_, purgeErr := user.Purge(ctx, "x", 0)
	_, blockErr := root.Lock(ctx, "x", "r", dlm.EX, dlm.NoQueue())
	defer func() { _ = l.Unlock(ctx) }()
	far := c.resourceMasteredOn(t, ctx, "x", 2, "far")
	lf, err := root.Lock(ctx, "x", far, dlm.EX)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lf.Unlock(ctx) }()
	_, farErr := c.client(ctx, 1).Lock(ctx, "x", far, dlm.EX, dlm.NoQueue())
	_, longErr := root.Lock(ctx, "x", strings.Repeat("r", 65), dlm.EX)
	_, modeErr := root.Lock(ctx, "x", "r", dlm.Mode(99))
	tests := []struct {
		name string
		err  error
		is   error
		want string
	}{
		{"lock in another user's lockspace", lockErr, dlm.ErrPermission,
			`dlm: lock x/r: permission denied: lockspace "x" belongs to uid 0 gid 0, caller is uid 1000`},
		{"lock in a system lockspace", sysErr, dlm.ErrPermission,
			`dlm: lock openssi.sys/r: permission denied: lockspace "openssi.sys" is the system's, root only: caller is uid 1000`},
		{"purge in another user's lockspace", purgeErr, dlm.ErrPermission,
			`dlm: purge x: permission denied: lockspace "x" belongs to uid 0 gid 0, caller is uid 1000`},
		{"lock that would block", blockErr, dlm.ErrWouldBlock,
			`dlm: lock x/r: request would block`},
		{"lock that would block, at a master on another node", farErr, dlm.ErrWouldBlock,
			`dlm: lock x/` + far + `: request would block`},
		{"lock of a resource name too long", longErr, dlm.ErrInvalid,
			`dlm: lock x/` + strings.Repeat("r", 65) + `: invalid argument: resource name is 65 bytes long: want at most 64`},
		{"lock in a mode out of range", modeErr, dlm.ErrInvalid,
			`dlm: lock x/r: invalid argument: mode 99: want NL, CR, CW, PR, PW or EX`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.is) {
				t.Errorf("error %v is not %v", tt.err, tt.is)
			}
			if tt.err == nil || tt.err.Error() != tt.want {
				t.Errorf("error reads\n\t%v\nwant\n\t%s", tt.err, tt.want)
			}
		})
	}
}
