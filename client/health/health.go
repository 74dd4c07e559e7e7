// Package health asks an OpenSSI daemon of this node whether it serves: the
// standard gRPC health service every daemon runs on its local socket
// (NOT_SERVING until the daemon is ready, SERVING after, NOT_SERVING again
// while it drains). `ssi status` uses it; so can a monitoring check.
//
//	st, err := health.Check(ctx, "/run/openssi/dlmd.sock")
//	if errors.Is(err, health.ErrNotRunning) { ... }
//	if st != health.Serving { ... }
package health

import (
	"context"
	"errors"
	"fmt"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/openssi/openssi/internal/localapi"
)

// Status is a daemon's answer.
type Status string

// The answers of the gRPC health service.
const (
	Serving    Status = "SERVING"
	NotServing Status = "NOT_SERVING"
	Unknown    Status = "UNKNOWN"
)

// ErrNotRunning is wrapped when no daemon answers on the socket.
var ErrNotRunning = errors.New("not running")

// Check asks the daemon listening on socket for its health. It returns an
// error wrapping ErrNotRunning when nothing answers there.
func Check(ctx context.Context, socket string) (Status, error) {
	conn, err := localapi.Dial(ctx, socket)
	if err != nil {
		if errors.Is(err, localapi.ErrNotRunning) {
			return "", fmt.Errorf("health: no answer on %s: %w", socket, ErrNotRunning)
		}
		return "", fmt.Errorf("health: %w", err)
	}
	defer conn.Close()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		if localapi.IsUnavailable(err) {
			return "", fmt.Errorf("health: no answer on %s: %w", socket, ErrNotRunning)
		}
		return "", fmt.Errorf("health: %s: %w", socket, err)
	}
	switch r.GetStatus() {
	case healthpb.HealthCheckResponse_SERVING:
		return Serving, nil
	case healthpb.HealthCheckResponse_NOT_SERVING:
		return NotServing, nil
	}
	return Status(r.GetStatus().String()), nil
}
