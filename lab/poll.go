package lab

import (
	"context"
	"fmt"
	"time"
)

// Poll calls cond every 250 ms until it says nothing is missing (""), or
// timeout passed (an error naming what, with cond's last answer), or ctx
// ended.
func Poll(ctx context.Context, timeout time.Duration, what string, cond func() string) error {
	deadline := time.Now().Add(timeout)
	for {
		why := cond()
		if why == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not after %s: %s", what, timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}
