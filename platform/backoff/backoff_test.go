package backoff_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/backoff"
)

func TestExponentialDoublesWithinTheUpperHalfUpToMax(t *testing.T) {
	b := backoff.Exponential{Min: 100 * time.Millisecond, Max: time.Second}
	for _, step := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		step *= time.Millisecond
		d := b.Next()
		require.GreaterOrEqual(t, d, step/2)
		require.LessOrEqual(t, d, step)
	}
	b.Reset()
	d := b.Next()
	require.GreaterOrEqual(t, d, 50*time.Millisecond)
	require.LessOrEqual(t, d, 100*time.Millisecond)
}

func TestSleep(t *testing.T) {
	require.NoError(t, backoff.Sleep(context.Background(), time.Millisecond))

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	require.ErrorIs(t, backoff.Sleep(ctx, time.Hour), context.Canceled)
	require.Less(t, time.Since(start), time.Second, "a cancelled context ends the wait")
	require.ErrorIs(t, backoff.Sleep(ctx, 0), context.Canceled)
}
