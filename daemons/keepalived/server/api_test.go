package server

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/internal/localapi"
	keepalivev1 "github.com/openssi/openssi/proto/keepalive/v1"
)

func callerCtx(uid uint32) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: localapi.AuthInfo{Cred: localapi.Cred{PID: 1, UID: uid, GID: uid}}})
}

// TestOnlyRootChanges: add, move and remove are refused to any caller
// but root (uid from SO_PEERCRED), before anything is read or written
// (the Manager here has no Consul: reaching it would panic).
func TestOnlyRootChanges(t *testing.T) {
	a := NewAPI(New(Config{Self: 1}))
	ctx := callerCtx(1000)
	app := &keepalivev1.App{Name: "web", Command: []string{"/bin/true"}}
	for what, call := range map[string]func() error{
		"add":    func() error { _, err := a.Add(ctx, &keepalivev1.AddRequest{App: app}); return err },
		"move":   func() error { _, err := a.Move(ctx, &keepalivev1.MoveRequest{Name: "web", Node: 2}); return err },
		"remove": func() error { _, err := a.Remove(ctx, &keepalivev1.RemoveRequest{Name: "web"}); return err },
	} {
		err := call()
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "only root") {
			t.Errorf("%s by uid 1000: %v, want PermissionDenied", what, err)
		}
	}
	if _, err := a.Add(context.Background(), &keepalivev1.AddRequest{App: app}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("add without credentials: %v, want Unauthenticated", err)
	}
}

// TestAddRefusesBadInput: a bad declaration or an unknown node is one
// line naming the option, before Consul is asked.
func TestAddRefusesBadInput(t *testing.T) {
	m := New(Config{Self: 1})
	m.Membership(1, true)
	m.Membership(2, false)
	a := NewAPI(m)
	root := callerCtx(0)
	for _, tc := range []struct {
		app  *keepalivev1.App
		want string
	}{
		{&keepalivev1.App{Name: "Web", Command: []string{"/bin/true"}}, "application name \"Web\""},
		{&keepalivev1.App{Name: "web"}, "the command (after --): want the program"},
		{&keepalivev1.App{Name: "web", Command: []string{"/bin/true"}, Check: "tcp:0"}, "--check: check \"tcp:0\": the port must be 1..65535"},
		{&keepalivev1.App{Name: "web", Command: []string{"/bin/true"}, Placement: "primary"}, "--placement: \"primary\""},
		{&keepalivev1.App{Name: "web", Command: []string{"/bin/true"}, User: "no body"}, "--user: \"no body\" is not a user name"},
		{&keepalivev1.App{Name: "web", Command: []string{"/bin/true"}, Primary: 7}, "node 7 is not a member of the cluster"},
		{&keepalivev1.App{Name: "web", Command: []string{"/bin/true"}, Backups: []uint32{2, 9}}, "node 9 is not a member of the cluster"},
	} {
		_, err := a.Add(root, &keepalivev1.AddRequest{App: tc.app})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("add %v: %v, want InvalidArgument with %q", tc.app, err, tc.want)
		}
	}
}
