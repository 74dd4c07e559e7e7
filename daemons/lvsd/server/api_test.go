package server

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/lvsd/lvsdspec"
	"github.com/openssi/openssi/internal/localapi"
	lvsv1 "github.com/openssi/openssi/proto/lvs/v1"
)

func callerCtx(uid uint32) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{AuthInfo: localapi.AuthInfo{Cred: localapi.Cred{PID: 1, UID: uid, GID: uid}}})
}

// TestOnlyRootChangesPorts: adding and removing a port are refused to any
// caller but root, before Consul is asked (the Server here has none:
// reaching it would panic); reading is open.
func TestOnlyRootChangesPorts(t *testing.T) {
	a := NewAPI(New(Config{Self: 1}))
	ctx := callerCtx(1000)
	for what, call := range map[string]func() error{
		"add":    func() error { _, err := a.AddPort(ctx, &lvsv1.AddPortRequest{Port: "tcp/80"}); return err },
		"remove": func() error { _, err := a.RemovePort(ctx, &lvsv1.RemovePortRequest{Port: "tcp/80"}); return err },
	} {
		if err := call(); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "only root") {
			t.Errorf("%s by uid 1000: %v, want PermissionDenied", what, err)
		}
	}
	if _, err := a.AddPort(context.Background(), &lvsv1.AddPortRequest{Port: "tcp/80"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("add without credentials: %v, want Unauthenticated", err)
	}
	if _, err := a.Status(ctx, &lvsv1.StatusRequest{}); err != nil {
		t.Errorf("status by uid 1000: %v", err)
	}
}

// TestAddPortRefusesBadInput: a bad port or option, a port number taken
// by the other protocol, a port of openssi.yaml: one line, before Consul
// is asked.
func TestAddPortRefusesBadInput(t *testing.T) {
	a := NewAPI(New(Config{Self: 1, Ports: []lvsdspec.Options{{Port: lvsdspec.Port{Proto: "udp", Num: 53}}}}))
	root := callerCtx(0)
	for _, tc := range []struct {
		req  *lvsv1.AddPortRequest
		code codes.Code
		want string
	}{
		{&lvsv1.AddPortRequest{Port: "tcp/0"}, codes.InvalidArgument, "port: \"tcp/0\""},
		{&lvsv1.AddPortRequest{Port: "http"}, codes.InvalidArgument, "want tcp/N or udp/N"},
		{&lvsv1.AddPortRequest{Port: "tcp/80", Affinity: "dest"}, codes.InvalidArgument, "affinity"},
		{&lvsv1.AddPortRequest{Port: "udp/54", ProxyProtocol: true}, codes.InvalidArgument, "proxy_protocol"},
		{&lvsv1.AddPortRequest{Port: "tcp/53"}, codes.AlreadyExists, "port 53 is registered as udp/53"},
		{&lvsv1.AddPortRequest{Port: "udp/53", Replace: true}, codes.AlreadyExists, "openssi.yaml"},
	} {
		_, err := a.AddPort(root, tc.req)
		if status.Code(err) != tc.code || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("add %v: %v, want %v with %q", tc.req, err, tc.code, tc.want)
		}
	}
	for _, tc := range []struct {
		port string
		code codes.Code
	}{{"udp/53", codes.FailedPrecondition}, {"tcp/81", codes.NotFound}, {"tcp", codes.InvalidArgument}} {
		if _, err := a.RemovePort(root, &lvsv1.RemovePortRequest{Port: tc.port}); status.Code(err) != tc.code {
			t.Errorf("remove %s: %v, want %v", tc.port, err, tc.code)
		}
	}
}

// TestAddPortCapped: past lvsdspec.MaxPorts registered ports, a new one
// is refused before Consul is asked.
func TestAddPortCapped(t *testing.T) {
	var cfg []lvsdspec.Options
	for i := range lvsdspec.MaxPorts {
		cfg = append(cfg, lvsdspec.Options{Port: lvsdspec.Port{Proto: "tcp", Num: uint16(2000 + i)}})
	}
	a := NewAPI(New(Config{Self: 1, Ports: cfg}))
	_, err := a.AddPort(callerCtx(0), &lvsv1.AddPortRequest{Port: "tcp/80"})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "256") {
		t.Errorf("add past the cap: %v, want ResourceExhausted", err)
	}
}
