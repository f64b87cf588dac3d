package optlock

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// recorder replaces the clock and the randomness of retry: it records the
// ceiling of every backoff and waits not at all.
type recorder struct{ ceilings, waits []time.Duration }

func (r *recorder) randN(n int64) int64 {
	r.ceilings = append(r.ceilings, time.Duration(n-1))
	return n - 1 // the largest delay full jitter may pick
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
	var r recorder
	calls := 0
	err := retry(context.Background(), DefaultPolicy, nil, "order", conflictTimes(2, &calls), r.randN, r.wait)
	require.NoError(t, err)
	require.Equal(t, 3, calls)
	require.Len(t, r.waits, 2)
}

func TestRetryReturnsOtherErrorsAtOnce(t *testing.T) {
	var r recorder
	boom := errors.New("boom")
	calls := 0
	err := retry(context.Background(), DefaultPolicy, nil, "order", func(context.Context) error {
		calls++
		return boom
	}, r.randN, r.wait)
	require.Same(t, boom, err)
	require.Equal(t, 1, calls)
	require.Empty(t, r.waits)
}

func TestRetryIsBounded(t *testing.T) {
	for _, maxAttempts := range []int{0, 1, 3, 5} {
		t.Run(fmt.Sprint(maxAttempts), func(t *testing.T) {
			var r recorder
			calls := 0
			p := DefaultPolicy
			p.MaxAttempts = maxAttempts
			err := retry(context.Background(), p, nil, "order", conflictTimes(100, &calls), r.randN, r.wait)
			require.ErrorIs(t, err, ErrConflict)
			require.Equal(t, max(maxAttempts, 1), calls)
			require.Len(t, r.waits, max(maxAttempts, 1)-1)
		})
	}
}

func TestRetryBackoffGrowsExponentiallyUpToMax(t *testing.T) {
	var r recorder
	calls := 0
	p := Policy{MaxAttempts: 9, BaseDelay: 5 * time.Millisecond, MaxDelay: 200 * time.Millisecond}
	err := retry(context.Background(), p, nil, "order", conflictTimes(100, &calls), r.randN, r.wait)
	require.ErrorIs(t, err, ErrConflict)
	ms := time.Millisecond
	require.Equal(t, []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 200 * ms, 200 * ms}, r.ceilings)
	require.Equal(t, r.ceilings, r.waits, "the wait is what the jitter picked")
}

func TestBackoffStaysWithinBounds(t *testing.T) {
	p := DefaultPolicy
	for attempt := 1; attempt < 200; attempt++ {
		ceiling := min(p.BaseDelay<<min(attempt-1, 20), p.MaxDelay)
		for range 50 {
			d := p.backoff(attempt, func(n int64) int64 {
				require.Equal(t, int64(ceiling)+1, n)
				return n / 2
			})
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, ceiling)
		}
	}
	require.Zero(t, Policy{}.backoff(3, func(int64) int64 { panic("no jitter without a delay") }))
	huge := Policy{BaseDelay: time.Hour}
	require.Positive(t, huge.backoff(100, func(n int64) int64 { return n - 1 }), "doubling must not overflow")
}

func TestRetryStopsWhenContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	start := time.Now()
	err := Retry(ctx, Policy{MaxAttempts: 5, BaseDelay: time.Hour, MaxDelay: time.Hour}, nil, "order",
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
