package backoff_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/backoff"
)

var errDown = errors.New("connection refused")

func TestUntilRetriesUntilSuccess(t *testing.T) {
	calls := 0
	var waits []time.Duration
	err := backoff.Until(t.Context(), 10*time.Second, func(context.Context) error {
		calls++
		if calls < 4 {
			return errDown
		}
		return nil
	}, nil, func(attempt int, err error, wait time.Duration) {
		require.ErrorIs(t, err, errDown)
		require.Equal(t, len(waits)+1, attempt)
		waits = append(waits, wait)
	})
	require.NoError(t, err)
	require.Equal(t, 4, calls)
	require.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}, waits)
}

func TestUntilGivesUpAfterMaxWait(t *testing.T) {
	start := time.Now()
	err := backoff.Until(t.Context(), 500*time.Millisecond, func(context.Context) error { return errDown }, nil, nil)
	require.ErrorIs(t, err, backoff.ErrTimeout)
	require.ErrorIs(t, err, errDown)
	require.GreaterOrEqual(t, time.Since(start), 500*time.Millisecond)
	require.Less(t, time.Since(start), 2*time.Second)
}

func TestUntilStopsOnPermanentError(t *testing.T) {
	calls := 0
	err := backoff.Until(t.Context(), 10*time.Second, func(context.Context) error {
		calls++
		return errDown
	}, func(error) bool { return true }, nil)
	require.ErrorIs(t, err, errDown)
	require.NotErrorIs(t, err, backoff.ErrTimeout)
	require.Equal(t, 1, calls)
}

func TestUntilStopsWhenContextIsDone(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 150*time.Millisecond)
	defer cancel()
	err := backoff.Until(ctx, time.Minute, func(context.Context) error { return errDown }, nil, nil)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, errDown)
}

func TestUntilGivesEachAttemptABoundedContext(t *testing.T) {
	err := backoff.Until(t.Context(), time.Minute, func(ctx context.Context) error {
		_, ok := ctx.Deadline()
		require.True(t, ok)
		return nil
	}, nil, nil)
	require.NoError(t, err)
}
