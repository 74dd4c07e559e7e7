package daemon

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"google.golang.org/grpc"

	"github.com/openssi/openssi/client/health"
	"github.com/openssi/openssi/internal/daemons"
)

// TestMainJoinsItsGoroutines: when run returns, Main stops a local server
// the daemon left serving and waits for every goroutine it started (the
// server, the reload loop, the watchdog), so nothing outlives the daemon.
func TestMainJoinsItsGoroutines(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "openssi.yaml")
	if err := os.WriteFile(conf, []byte("cluster:\n  run_dir: "+dir+"\n  socket_group: \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := daemons.All[0]
	socket := filepath.Join(dir, d.Name+".sock")
	before := runtime.NumGoroutine()
	var stdout, stderr bytes.Buffer
	code := main(d, daemons.Sections(), []string{"--config", conf}, &stdout, &stderr, func(ctx context.Context, env *Env) error {
		local, err := env.ServeLocal(func(*grpc.Server) {})
		if err != nil {
			return err
		}
		local.Ready()
		if st, err := health.Check(ctx, socket); err != nil || st != health.Serving {
			t.Errorf("while running: %q, %v", st, err)
		}
		return nil // returns without stopping local
	})
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if _, err := health.Check(context.Background(), socket); !errors.Is(err, health.ErrNotRunning) {
		t.Errorf("after Main returned the socket still answers: %v", err)
	}
	// Goroutines of the standard library's signal handling may remain;
	// none of Main's own may.
	if after := runtime.NumGoroutine(); after > before+1 {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before Main, %d after:\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}

// TestGoEndsWithRun: a goroutine started with Env.Go on a context that
// never ends is cancelled and joined when run returns.
func TestGoEndsWithRun(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "openssi.yaml")
	if err := os.WriteFile(conf, []byte("cluster:\n  run_dir: "+dir+"\n  socket_group: \"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ended := false
	var stdout, stderr bytes.Buffer
	code := main(daemons.All[0], daemons.Sections(), []string{"--config", conf}, &stdout, &stderr, func(ctx context.Context, env *Env) error {
		env.Go(context.Background(), func(ctx context.Context) {
			<-ctx.Done()
			ended = true
		})
		return nil
	})
	if code != ExitOK || !ended {
		t.Fatalf("exit %d, goroutine ended: %v (%s)", code, ended, stderr.String())
	}
}
