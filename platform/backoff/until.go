package backoff

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// startup is the backoff of Until: fast first retries for the common case of
// a server that is just starting, capped so a slow one is noticed promptly.
var startup = Policy{Min: 100 * time.Millisecond, Max: 2 * time.Second, Jitter: NoJitter}

// minAttempt is the least time every attempt of Until gets, the last one
// included, so the final error is the server's answer rather than our own
// deadline.
const minAttempt = time.Second

// ErrTimeout is wrapped by the error Until returns when maxWait elapsed.
var ErrTimeout = errors.New("gave up waiting")

// Until waits for a dependency to become reachable at start-up: binaries
// start in any order (docker compose, Kubernetes), so PostgreSQL or Redis may
// come up a few seconds after the service that needs them. It calls try until
// it succeeds, try's error is permanent, maxWait has elapsed or ctx is done,
// waiting 100 ms, 200 ms, … (capped at 2 s) between attempts. Each attempt
// gets a context bounded by the remaining time (at least one second), so
// Until returns within about maxWait + 1 s. onRetry, if not nil, is called
// after every failed attempt that will be retried. The returned error wraps
// the last attempt's error (and ErrTimeout when time ran out).
func Until(ctx context.Context, maxWait time.Duration, try func(context.Context) error,
	permanent func(error) bool, onRetry func(attempt int, err error, wait time.Duration),
) error {
	deadline := time.Now().Add(maxWait)
	b := Exponential{Policy: startup}
	for attempt := 1; ; attempt++ {
		attemptDeadline := deadline
		if floor := time.Now().Add(minAttempt); floor.After(attemptDeadline) {
			attemptDeadline = floor
		}
		attemptCtx, cancel := context.WithDeadline(ctx, attemptDeadline)
		err := try(attemptCtx)
		cancel()
		if err == nil {
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("%w (last error: %w)", ctxErr, err)
		}
		if permanent != nil && permanent(err) {
			return err
		}
		remaining := time.Until(deadline)
		if remaining <= 0 {
			return fmt.Errorf("%w: %w", ErrTimeout, err)
		}
		wait := min(b.Next(), remaining)
		if onRetry != nil {
			onRetry(attempt, err, wait)
		}
		if serr := Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%w (last error: %w)", serr, err)
		}
	}
}
