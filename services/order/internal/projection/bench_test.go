package projection_test

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/services/order/internal/projection"
)

// histories returns the events of n orders with full saga histories (5
// events each on average: good, declined, out of stock, compensated), in
// an order Kafka could deliver them.
func histories(b *testing.B, n int) []ev {
	s := burst(b, (n+3)/4)
	return s.events
}

func messages(evs []ev) []kafka.Message {
	out := make([]kafka.Message, len(evs))
	for i, e := range evs {
		out[i] = e.message()
	}
	return out
}

// BenchmarkProjectionDrain measures how fast the projector drains a
// backlog: ~100,000 events of 20,000 orders already in the topics (4
// partitions each), applied by one projector with the default batch.
func BenchmarkProjectionDrain(b *testing.B) {
	for range b.N {
		b.StopTimer()
		tb := setup(b)
		evs := histories(b, 20_000)
		msgs := messages(evs)
		for i := 0; i < len(msgs); i += 5000 {
			require.NoError(b, tb.writer.WriteMessages(context.Background(), msgs[i:min(i+5000, len(msgs))]...))
		}
		var applied atomic.Int64
		var first atomic.Pointer[time.Time]
		var firstN atomic.Int64
		done := make(chan struct{})
		var once sync.Once
		b.StartTimer()
		start := time.Now()
		stop := tb.projector(b, projection.Table, "order-read", nil, projection.Options{OnApplied: func(o projection.Outcome) {
			n := int64(o.Applied + o.Stale + o.Duplicate)
			if first.Load() == nil {
				now := time.Now()
				first.Store(&now)
				firstN.Store(n)
			}
			if applied.Add(n) >= int64(len(evs)) {
				once.Do(func() { close(done) })
			}
		}})
		select {
		case <-done:
		case <-time.After(5 * time.Minute):
			b.Fatalf("drained %d of %d events in 5 minutes", applied.Load(), len(evs))
		}
		end := time.Now()
		b.StopTimer()
		stop()
		// From the first batch's commit on: the group join (a few
		// seconds with kafka-go, once per start) is not projection.
		b.ReportMetric(float64(int64(len(evs))-firstN.Load())/end.Sub(*first.Load()).Seconds(), "events/s")
		b.ReportMetric(float64(len(evs))/end.Sub(start).Seconds(), "with_join_events/s")
		b.ReportMetric(0, "ns/op")
	}
}

// BenchmarkProjectionLag offers 2,000 events/s for 10 s, stamped with
// their occurred-at as they are published, and measures each event's lag
// from occurred-at to the commit of its view change (what
// order_projection_lag_seconds shows), exactly.
func BenchmarkProjectionLag(b *testing.B) {
	const rate, seconds = 2000, 10
	for range b.N {
		b.StopTimer()
		tb := setup(b)
		evs := histories(b, rate*seconds/5)
		var mu sync.Mutex
		lags := make([]time.Duration, 0, len(evs))
		tb.projector(b, projection.Table, "order-read", nil, projection.Options{OnApplied: func(o projection.Outcome) {
			mu.Lock()
			defer mu.Unlock()
			for _, at := range o.AppliedAt {
				lags = append(lags, o.Committed.Sub(at))
			}
		}})
		b.StartTimer()
		// Ticks of 10 ms, 20 events each: what a relay publishing at
		// 2,000 events/s sends.
		tick := time.NewTicker(10 * time.Millisecond)
		perTick := rate / 100
		for i := 0; i < len(evs); i += perTick {
			<-tick.C
			chunk := evs[i:min(i+perTick, len(evs))]
			now := time.Now()
			for j := range chunk {
				chunk[j].at = now
			}
			require.NoError(b, tb.writer.WriteMessages(context.Background(), messages(chunk)...))
		}
		tick.Stop()
		require.Eventually(b, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(lags) == len(evs)
		}, 30*time.Second, 10*time.Millisecond)
		b.StopTimer()
		slices.Sort(lags)
		pct := func(p float64) float64 { return float64(lags[int(p*float64(len(lags)-1))].Microseconds()) / 1000 }
		b.ReportMetric(float64(rate), "events/s")
		b.ReportMetric(pct(0.50), "p50_ms")
		b.ReportMetric(pct(0.99), "p99_ms")
		b.ReportMetric(pct(1), "max_ms")
		b.ReportMetric(0, "ns/op")
	}
}
