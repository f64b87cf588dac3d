package optlock

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/backoff"
)

// recorder replaces the clock and the randomness of retry: it records the
// ceiling of every backoff and waits not at all.
type recorder struct {
	policy          Policy
	ceilings, waits []time.Duration
}

func (r *recorder) delay(n int) time.Duration {
	d := r.policy.Backoff.Step(n) // the largest delay full jitter may pick
	r.ceilings = append(r.ceilings, d)
	return d
}

func (r *recorder) wait(_ context.Context, d time.Duration) error {
	r.waits = append(r.waits, d)
	return nil
}

func conflictTimes(n int, calls *int) func(context.Context) error {
	return func(context.Context) error {
		*calls++
		if *calls <= n {
			return fmt.Errorf("update order: %w", ErrConflict)
		}
		return nil
	}
}

func TestRetryStopsOnSuccess(t *testing.T) {
	r := recorder{policy: DefaultPolicy}
	calls := 0
	err := retry(context.Background(), DefaultPolicy, nil, "order", conflictTimes(2, &calls), r.delay, r.wait)
	require.NoError(t, err)
	require.Equal(t, 3, calls)
	require.Len(t, r.waits, 2)
}

func TestRetryReturnsOtherErrorsAtOnce(t *testing.T) {
	r := recorder{policy: DefaultPolicy}
	boom := errors.New("boom")
	calls := 0
	err := retry(context.Background(), DefaultPolicy, nil, "order", func(context.Context) error {
		calls++
		return boom
	}, r.delay, r.wait)
	require.Same(t, boom, err)
	require.Equal(t, 1, calls)
	require.Empty(t, r.waits)
}

func TestRetryIsBounded(t *testing.T) {
	for _, maxAttempts := range []int{0, 1, 3, 5} {
		t.Run(fmt.Sprint(maxAttempts), func(t *testing.T) {
			calls := 0
			p := DefaultPolicy
			p.MaxAttempts = maxAttempts
			r := recorder{policy: p}
			err := retry(context.Background(), p, nil, "order", conflictTimes(100, &calls), r.delay, r.wait)
			require.ErrorIs(t, err, ErrConflict)
			require.Equal(t, max(maxAttempts, 1), calls)
			require.Len(t, r.waits, max(maxAttempts, 1)-1)
		})
	}
}

func TestRetryBackoffGrowsExponentiallyUpToMax(t *testing.T) {
	p := Policy{MaxAttempts: 9, Backoff: backoff.Policy{Min: 5 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: backoff.FullJitter}}
	r := recorder{policy: p}
	calls := 0
	err := retry(context.Background(), p, nil, "order", conflictTimes(100, &calls), r.delay, r.wait)
	require.ErrorIs(t, err, ErrConflict)
	ms := time.Millisecond
	require.Equal(t, []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 200 * ms, 200 * ms}, r.ceilings)
	require.Equal(t, r.ceilings, r.waits, "the wait is what the jitter picked")
}

func TestRetryStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	start := time.Now()
	err := Retry(ctx, Policy{MaxAttempts: 5, Backoff: backoff.Policy{Min: time.Hour, Max: time.Hour}}, nil, "order",
		func(context.Context) error {
			calls++
			cancel() // the caller gives up while Retry would back off for up to an hour
			return ErrConflict
		})
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, ErrConflict)
	require.Equal(t, 1, calls)
	require.Less(t, time.Since(start), time.Minute)
}
