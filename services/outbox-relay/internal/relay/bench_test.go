package relay_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/relay"
)

// benchPayload is the size of a typical order event body.
var benchPayload = strings.Repeat("p", 160)

func benchEvent(agg string, version int64) outbox.Event {
	e := orderEvent(agg, version)
	e.Payload = wrapperspb.String(benchPayload)
	return e
}

// BenchmarkDrain measures how fast one relay replica empties an outbox of
// 100,000 pre-inserted events (10 per aggregate) into the development
// broker, from start (lanes not yet claimed) to the last acknowledgement
// marked. Run with -benchtime=1x -count=5.
func BenchmarkDrain(b *testing.B) {
	for _, tc := range []struct {
		name           string
		batch, workers int
	}{
		{"batch=500/workers=4", 500, 4},
		{"batch=1000/workers=4", 1000, 4},
		{"batch=500/workers=8", 500, 8},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const n = 100_000
			url, pool := newOutboxDB(b)
			brk := startBroker(b, broker.Config{})
			w, err := outbox.NewWriter(nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			var elapsed time.Duration
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				insertBench(b, pool, w, n, 10)
				reg := prometheus.NewRegistry()
				rr := startRelay(b, relayOpts{urls: []string{url}, brokers: []string{brk.Addr()}, reg: reg,
					cfg: relay.Config{BatchSize: tc.batch, Workers: tc.workers, LeaseTTL: 10 * time.Second, StatsInterval: time.Hour}})
				start := time.Now()
				b.StartTimer()
				for metricValue(b, reg, "outbox_published_total", nil) < n {
					time.Sleep(time.Millisecond)
				}
				b.StopTimer()
				elapsed += time.Since(start)
				rr.stop(b)
				if left := countRows(b, pool, "published_at IS NULL"); left != 0 {
					b.Fatalf("%d rows left", left)
				}
			}
			b.ReportMetric(float64(n*b.N)/elapsed.Seconds(), "events/s")
		})
	}
}

// insertBench empties the outbox and inserts n events, perAgg per
// aggregate, 1000 per statement; then it refreshes the planner statistics
// as autovacuum would.
func insertBench(tb testing.TB, pool *pgxpool.Pool, w *outbox.Writer, n, perAgg int) {
	tb.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, "TRUNCATE outbox; UPDATE outbox_lanes SET owner = '', lease_until = 'epoch'"); err != nil {
		tb.Fatal(err)
	}
	prefix := uuid.NewString()[:8]
	events := make([]outbox.Event, 0, 1000)
	for v := 1; v <= perAgg; v++ {
		for a := range n / perAgg {
			events = append(events, benchEvent(prefix+"-"+strconv.Itoa(a), int64(v)))
			if len(events) == cap(events) {
				tx, err := pool.Begin(ctx)
				if err != nil {
					tb.Fatal(err)
				}
				if err := w.Append(ctx, tx, events...); err != nil {
					tb.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					tb.Fatal(err)
				}
				events = events[:0]
			}
		}
	}
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE outbox"); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkSteadyLag writes 5,000 events/s for 10 s (25 writers committing
// 5 events per transaction, 1,000 transactions/s, as services do) while one
// relay publishes them, and reports the end-to-end lag percentiles: from
// occurred-at (set in the writer's transaction, before its commit) to a
// Kafka consumer receiving the message (e2e_*), and to the row being marked
// published after the broker's ack (mark_*). Run with -benchtime=1x.
func BenchmarkSteadyLag(b *testing.B) {
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) { benchmarkSteadyLag(b, workers) })
	}
}

func benchmarkSteadyLag(b *testing.B, workers int) {
	const (
		rate     = 5000 // events/s
		perTx    = 5
		writersN = 25
		duration = 10 * time.Second
	)
	ctx := context.Background()
	url, pool := newOutboxDB(b)
	brk := startBroker(b, broker.Config{})
	w, err := outbox.NewWriter(nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	var e2e []float64
	var marks []float64
	var achieved float64
	for i := 0; i < b.N; i++ {
		if _, err := pool.Exec(ctx, "TRUNCATE outbox"); err != nil {
			b.Fatal(err)
		}
		startRelay(b, relayOpts{urls: []string{url}, brokers: []string{brk.Addr()},
			cfg: relay.Config{Workers: workers, LeaseTTL: 10 * time.Second, StatsInterval: time.Hour}})
		lags := consumeLags(b, brk.Addr())

		// Each writer commits perTx events every interval (25 writers, 40 ms).
		interval := time.Duration(int64(time.Second) * perTx * writersN / rate)
		var wg sync.WaitGroup
		var mu sync.Mutex
		written := 0
		start := time.Now()
		for wi := range writersN {
			wg.Go(func() {
				t := time.NewTicker(interval)
				defer t.Stop()
				aggs := make([]string, perTx)
				for j := range aggs {
					aggs[j] = fmt.Sprintf("steady-%d-%d-%s", wi, j, uuid.NewString()[:6])
				}
				for v := int64(1); time.Since(start) < duration; v++ {
					<-t.C
					tx, err := pool.Begin(ctx)
					if err != nil {
						b.Error(err)
						return
					}
					events := make([]outbox.Event, perTx)
					for j, agg := range aggs {
						if _, err := tx.Exec(ctx, `INSERT INTO orders (id, version) VALUES ($1, $2)
							ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version`, agg, v); err != nil {
							b.Error(err)
							return
						}
						events[j] = benchEvent(agg, v)
					}
					if err := w.Append(ctx, tx, events...); err != nil {
						b.Error(err)
						return
					}
					if err := tx.Commit(ctx); err != nil {
						b.Error(err)
						return
					}
					mu.Lock()
					written += perTx
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		achieved = float64(written) / time.Since(start).Seconds()
		deadline := time.Now().Add(30 * time.Second)
		for lags.count() < written && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := lags.count(); got < written {
			b.Fatalf("consumed %d of %d", got, written)
		}
		e2e = append(e2e, lags.values()...)
		rows, err := pool.Query(ctx, "SELECT EXTRACT(EPOCH FROM published_at - occurred_at)::float8 FROM outbox WHERE published_at IS NOT NULL")
		if err != nil {
			b.Fatal(err)
		}
		for rows.Next() {
			var s float64
			if err := rows.Scan(&s); err != nil {
				b.Fatal(err)
			}
			marks = append(marks, s)
		}
		rows.Close()
	}
	b.ReportMetric(achieved, "events/s")
	b.ReportMetric(percentile(e2e, 0.50)*1000, "e2e_p50_ms")
	b.ReportMetric(percentile(e2e, 0.99)*1000, "e2e_p99_ms")
	b.ReportMetric(percentile(marks, 0.50)*1000, "mark_p50_ms")
	b.ReportMetric(percentile(marks, 0.99)*1000, "mark_p99_ms")
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// lagRecorder keeps receive time minus occurred-at of every message.
type lagRecorder struct {
	mu   sync.Mutex
	lags []float64
}

func (l *lagRecorder) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lags)
}

func (l *lagRecorder) values() []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lags)
}

// consumeLags reads the order topic's partitions directly (no group, so no
// rebalance delay) from their current end.
func consumeLags(tb testing.TB, addr string) *lagRecorder {
	tb.Helper()
	l := &lagRecorder{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for p := range int(broker.DefaultPartitions) {
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers: []string{addr}, Topic: event.TopicOrder, Partition: p,
			MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 100 * time.Millisecond,
		})
		if err := r.SetOffset(kafka.LastOffset); err != nil {
			tb.Fatal(err)
		}
		wg.Go(func() {
			defer func() { _ = r.Close() }()
			for {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					return
				}
				now := time.Now()
				for _, h := range m.Headers {
					if h.Key == event.HeaderOccurredAt {
						t, err := time.Parse(time.RFC3339Nano, string(h.Value))
						if err == nil {
							l.mu.Lock()
							l.lags = append(l.lags, now.Sub(t).Seconds())
							l.mu.Unlock()
						}
					}
				}
			}
		})
	}
	tb.Cleanup(func() { cancel(); wg.Wait() })
	return l
}
