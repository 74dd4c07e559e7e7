package daemon

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/lifecycle"
)

func TestRetry(t *testing.T) {
	env := &Env{Watchdog: lifecycle.NewWatchdogInterval(0, lifecycle.NewNotifierFunc(func(string) (bool, error) { return false, nil }))}
	transient, fatal := errors.New("not yet"), errors.New("never")
	tests := []struct {
		name  string
		fails int   // transient failures before the outcome
		last  error // the outcome
		want  error
		calls int
	}{
		{"success at once", 0, nil, nil, 1},
		{"success after retries", 3, nil, nil, 4},
		{"permanent error is not retried and comes back unwrapped", 1, Permanent{Err: fatal}, fatal, 2},
	}
	for _, tt := range tests {
		calls := 0
		err := env.Retry(context.Background(), time.Nanosecond, 4*time.Nanosecond, func() error {
			calls++
			if calls <= tt.fails {
				return transient
			}
			return tt.last
		})
		if err != tt.want || calls != tt.calls {
			t.Errorf("%s: err %v after %d calls, want %v after %d", tt.name, err, calls, tt.want, tt.calls)
		}
		var p Permanent
		if errors.As(err, &p) {
			t.Errorf("%s: Permanent leaked to the caller", tt.name)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := env.Retry(ctx, time.Hour, time.Hour, func() error { return transient }); err != transient {
		t.Fatalf("ended context: %v", err)
	}
}
