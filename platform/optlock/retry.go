package optlock

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
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
	// BaseDelay is the backoff cap before the second attempt; it doubles for
	// each further attempt up to MaxDelay.
	BaseDelay time.Duration
	// MaxDelay caps every backoff; zero or less means no cap.
	MaxDelay time.Duration
}

// DefaultPolicy suits a conflict on one hot row among a handful of writers:
// at most 5 attempts, waiting at most 5, 10, 20, 40 ms between them.
var DefaultPolicy = Policy{MaxAttempts: 5, BaseDelay: 5 * time.Millisecond, MaxDelay: 200 * time.Millisecond}

// Retry calls fn until it returns an error that does not wrap [ErrConflict]
// (nil included), or until policy.MaxAttempts calls have conflicted. Before
// each retry it waits a random duration in [0, min(MaxDelay, BaseDelay·2ⁿ⁻¹)]
// ("full jitter"), so that writers who collided once do not collide again in
// lockstep.
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
	return retry(ctx, policy, m, aggregate, fn, rand.Int64N, backoff.Sleep)
}

// retry is Retry with its randomness and its clock injected, so that tests
// can check the delays without waiting for them.
func retry(ctx context.Context, policy Policy, m *Metrics, aggregate string, fn func(context.Context) error,
	randN func(int64) int64, wait func(context.Context, time.Duration) error,
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
		if werr := wait(ctx, policy.backoff(attempt, randN)); werr != nil {
			return errors.Join(werr, err)
		}
		m.retry(aggregate)
	}
}

// backoff returns the full-jitter delay after the given (1-based) attempt.
func (p Policy) backoff(attempt int, randN func(int64) int64) time.Duration {
	ceiling := max(p.BaseDelay, 0)
	for i := 1; i < attempt; i++ {
		if (p.MaxDelay > 0 && ceiling >= p.MaxDelay) || ceiling > math.MaxInt64/2 {
			break // doubling further cannot matter and might overflow
		}
		ceiling *= 2
	}
	if p.MaxDelay > 0 {
		ceiling = min(ceiling, p.MaxDelay)
	}
	if ceiling <= 0 {
		return 0
	}
	return time.Duration(randN(int64(ceiling) + 1))
}
