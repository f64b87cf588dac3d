package generator

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestPacerSchedule(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)
	p := newPacer(start, 50)
	require.Equal(t, start, p.due(0))
	require.Equal(t, start.Add(20*time.Millisecond), p.due(1))
	require.Equal(t, start.Add(time.Second), p.due(50), "50 orders a second")
	require.Equal(t, start.Add(4*time.Second), newPacer(start, 0.25).due(1))
}

// inFlight counts concurrent calls and remembers the most at once.
type inFlight struct {
	mu       sync.Mutex
	now, max int
	calls    atomic.Int64
	seen     sync.Map
}

func (f *inFlight) work(hold time.Duration) func(context.Context, int) {
	return func(ctx context.Context, i int) {
		f.calls.Add(1)
		f.seen.Store(i, true)
		f.mu.Lock()
		f.now++
		f.max = max(f.max, f.now)
		f.mu.Unlock()
		select {
		case <-time.After(hold):
		case <-ctx.Done():
		}
		f.mu.Lock()
		f.now--
		f.mu.Unlock()
	}
}

func TestDispatchConcurrencyNeverExceedsTheWorkers(t *testing.T) {
	t.Parallel()
	var f inFlight
	n, _ := dispatch(context.Background(), plan{concurrency: 3, count: 20}, f.work(5*time.Millisecond))
	require.Equal(t, 20, n)
	require.EqualValues(t, 20, f.calls.Load())
	require.Equal(t, 3, f.max)
	for i := range 20 {
		_, ok := f.seen.Load(i)
		require.True(t, ok, "order %d started", i)
	}
}

func TestDispatchRateStopsAtTheCount(t *testing.T) {
	t.Parallel()
	var f inFlight
	start := time.Now()
	n, window := dispatch(context.Background(), plan{rate: 100, concurrency: 1000, count: 10}, f.work(time.Millisecond))
	require.Equal(t, 10, n)
	// The tenth order is due 90ms after the first.
	require.GreaterOrEqual(t, window, 90*time.Millisecond)
	require.Less(t, time.Since(start), time.Second)
}

func TestDispatchRateForADuration(t *testing.T) {
	t.Parallel()
	var f inFlight
	n, window := dispatch(context.Background(), plan{rate: 100, concurrency: 1000, duration: 300 * time.Millisecond}, f.work(20*time.Millisecond))
	// 100/s for 0.3s: 30 due (0 … 290ms); a loaded machine may start a
	// few fewer before the deadline, never more.
	require.LessOrEqual(t, n, 31)
	require.GreaterOrEqual(t, n, 20)
	require.InDelta(t, 300*time.Millisecond, window, float64(100*time.Millisecond))
	require.Greater(t, f.max, 1, "open loop: orders overlap")
}

func TestDispatchRateCapsTheOrdersInFlight(t *testing.T) {
	t.Parallel()
	var f inFlight
	n, _ := dispatch(context.Background(), plan{rate: 1000, concurrency: 2, count: 12}, f.work(10*time.Millisecond))
	require.Equal(t, 12, n)
	require.Equal(t, 2, f.max)
}

func TestDispatchStopsWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	var f inFlight
	done := make(chan int)
	go func() {
		n, _ := dispatch(ctx, plan{concurrency: 4}, f.work(time.Hour))
		done <- n
	}()
	require.Eventually(t, func() bool { return f.calls.Load() == 4 }, 5*time.Second, time.Millisecond)
	cancel()
	select {
	case n := <-done:
		require.Equal(t, 4, n, "no order starts after the context ends; the running ones return")
	case <-time.After(5 * time.Second):
		t.Fatal("dispatch did not return after the context ended")
	}
}

func TestBackoffDoublesToACap(t *testing.T) {
	t.Parallel()
	var got []time.Duration
	for n := 1; n <= 8; n++ {
		got = append(got, backoff(n))
	}
	require.Equal(t, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 3200 * time.Millisecond, 3200 * time.Millisecond}, got)
}
