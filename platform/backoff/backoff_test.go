package backoff_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/backoff"
)

func TestExponentialDoublesWithinTheUpperHalfUpToMax(t *testing.T) {
	b := backoff.Exponential{Policy: backoff.Policy{Min: 100 * time.Millisecond, Max: time.Second}}
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

func TestPolicyDelayStaysWithinItsStep(t *testing.T) {
	ms := time.Millisecond
	p := backoff.Policy{Min: 5 * ms, Max: 200 * ms}
	require.Equal(t, []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 200 * ms, 200 * ms},
		[]time.Duration{p.Step(1), p.Step(2), p.Step(3), p.Step(4), p.Step(5), p.Step(6), p.Step(7), p.Step(200)})
	for _, jitter := range []backoff.Jitter{backoff.EqualJitter, backoff.FullJitter, backoff.NoJitter} {
		p.Jitter = jitter
		floor := map[backoff.Jitter]func(time.Duration) time.Duration{
			backoff.EqualJitter: func(d time.Duration) time.Duration { return d / 2 },
			backoff.FullJitter:  func(time.Duration) time.Duration { return 0 },
			backoff.NoJitter:    func(d time.Duration) time.Duration { return d },
		}[jitter]
		for n := 1; n < 200; n++ {
			step := p.Step(n)
			for range 20 {
				d := p.Delay(n)
				require.GreaterOrEqual(t, d, floor(step), "jitter %d, retry %d", jitter, n)
				require.LessOrEqual(t, d, step, "jitter %d, retry %d", jitter, n)
			}
		}
	}
	require.Zero(t, backoff.Policy{}.Delay(3))
	huge := backoff.Policy{Min: time.Hour, Jitter: backoff.NoJitter}
	require.Positive(t, huge.Delay(100), "doubling must not overflow")
	require.Equal(t, huge.Step(100), huge.Step(1000), "an uncapped step stops growing before it overflows")
}
