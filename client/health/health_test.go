package health_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/openssi/openssi/client/health"
	"github.com/openssi/openssi/internal/localapi"
)

func TestCheck(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "d.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := health.Check(ctx, socket); !errors.Is(err, health.ErrNotRunning) {
		t.Fatalf("no daemon: err = %v, want ErrNotRunning", err)
	}

	ln, _, err := localapi.Listen(socket, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(localapi.Credentials()))
	hs := grpchealth.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	defer func() { srv.Stop(); <-done }()

	for _, tc := range []struct {
		set  healthpb.HealthCheckResponse_ServingStatus
		want health.Status
	}{
		{healthpb.HealthCheckResponse_NOT_SERVING, health.NotServing},
		{healthpb.HealthCheckResponse_SERVING, health.Serving},
	} {
		hs.SetServingStatus("", tc.set)
		got, err := health.Check(ctx, socket)
		if err != nil || got != tc.want {
			t.Errorf("status %v: Check = %q, %v; want %q", tc.set, got, err, tc.want)
		}
	}
}
