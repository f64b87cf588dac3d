package optlock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/goodgo/goodgo/platform/backoff"
)

// ErrConflict reports that a conditional update matched no row because the
// version changed since it was read. Repositories wrap it; test with errors.Is.
var ErrConflict = errors.New("optlock: version conflict")

// Policy bounds the retries of [Retry].
type Policy struct {
	// MaxAttempts is the total number of calls of fn, the first included.
	// Values below 1 mean 1.
	MaxAttempts int
	// Backoff is the wait between calls; full jitter suits conflicts best.
	Backoff backoff.Policy
}

// DefaultPolicy suits a conflict on one hot row among a handful of writers:
// at most 5 attempts, waiting at most 5, 10, 20, 40 ms between them.
var DefaultPolicy = Policy{MaxAttempts: 5, Backoff: backoff.Policy{Min: 5 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: backoff.FullJitter}}

// Retry calls fn until it returns an error that does not wrap [ErrConflict]
// (nil included), or until policy.MaxAttempts calls have conflicted. Before
// each retry it waits policy.Backoff.Delay: with [backoff.FullJitter], a
// random duration in [0, min(Max, Min·2ⁿ⁻¹)], so that writers who collided
// once do not collide again in lockstep.
//
// fn must re-read the aggregate on every call: a retry with the stale version
// would conflict again. fn receives ctx unchanged.
//
// Retry returns nil, fn's non-conflict error unchanged, an error wrapping
// [ErrConflict] once the attempts are spent, or ctx's error (joined with the
// last conflict) when ctx ends while waiting. Every call of fn that returns
// nil or a conflict is recorded in m under aggregate as an attempt (see
// [Metrics.Record]: other errors are not); m may be nil.
func Retry(ctx context.Context, policy Policy, m *Metrics, aggregate string, fn func(context.Context) error) error {
	return retry(ctx, policy, m, aggregate, fn, policy.Backoff.Delay, backoff.Sleep)
}

// retry is Retry with its backoff and its clock injected, so that tests can
// check the delays without waiting for them.
func retry(ctx context.Context, policy Policy, m *Metrics, aggregate string, fn func(context.Context) error,
	delay func(retry int) time.Duration, wait func(context.Context, time.Duration) error,
) error {
	attempts := max(policy.MaxAttempts, 1)
	for attempt := 1; ; attempt++ {
		err := m.Record(aggregate, fn(ctx))
		if !errors.Is(err, ErrConflict) {
			return err
		}
		if attempt == attempts {
			return fmt.Errorf("optlock: %s: gave up after %d attempts: %w", aggregate, attempts, err)
		}
		if werr := wait(ctx, delay(attempt)); werr != nil {
			return errors.Join(werr, err)
		}
		m.retry(aggregate)
	}
}
