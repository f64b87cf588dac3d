package saga_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/saga"
)

// BenchmarkSagaThroughput runs a three-step saga of no-op steps on the real
// database: each of `inflight` clients starts a saga and waits for its
// outcome, then starts the next (closed loop). It reports sagas/s and the
// start→completed latency percentiles. Run with
//
//	go test -run '^$' -bench SagaThroughput -benchtime 3000x -count 3 ./saga/
func BenchmarkSagaThroughput(b *testing.B) {
	for _, inflight := range []int{16, 64, 128} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			benchmarkThroughput(b, inflight)
		})
	}
}

func benchmarkThroughput(b *testing.B, inflight int) {
	noop := func(context.Context, *saga.Execution) error { return nil }
	def := &saga.Definition{Name: "bench", Steps: saga.Sequence(
		saga.Step{Name: "a", Action: noop, Compensate: noop},
		saga.Step{Name: "b", Action: noop, Compensate: noop},
		saga.Step{Name: "c", Action: noop, Compensate: noop},
	)}
	var done sync.Map // saga id → chan struct{}, closed at its outcome
	doneCh := func(id uuid.UUID) chan struct{} {
		ch, _ := done.LoadOrStore(id, make(chan struct{}))
		return ch.(chan struct{})
	}
	e := benchEngine(b, inflight, func(id uuid.UUID, _ saga.State) { close(doneCh(id)) }, def)

	closedLoop(b, inflight, func(i int64) (time.Duration, bool) {
		t0 := time.Now()
		id, ok := benchStart(b, e, def, i)
		if !ok {
			return 0, false
		}
		<-doneCh(id)
		return time.Since(t0), true
	})
}

// benchEngine starts an engine with production defaults, inflight workers
// and onFinish, on a fresh database through a pool of 24 connections.
func benchEngine(b *testing.B, inflight int, onFinish func(uuid.UUID, saga.State), defs ...*saga.Definition) *engine {
	url, _ := pgtest.NewDatabase(b, migrations)
	pool, err := pgxpool.New(context.Background(), url+"&pool_max_conns=24")
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	opts := saga.Options{Owner: "bench"} // production defaults
	opts.Workers = inflight
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.OnFinish = onFinish
	return startEngine(b, pool, opts, defs...)
}

// benchStart starts saga i of def, failing the benchmark if it cannot.
func benchStart(b *testing.B, e *engine, def *saga.Definition, i int64) (uuid.UUID, bool) {
	r, err := e.Start(context.Background(), saga.StartRequest{
		Type: def.Name, CorrelationID: fmt.Sprintf("order-%d", i), StartedBy: "bench",
		Data: []byte(`{"order_id":"…","amount":1999,"payment_method":"tok_visa"}`),
	})
	if err != nil {
		b.Error(err)
		return uuid.Nil, false
	}
	return r.SagaID, true
}

// closedLoop runs b.N sagas from inflight clients, each calling one for
// its next saga i until b.N are taken or one returns false, and reports
// sagas/s and the p50 and p99 of the latencies one returned.
func closedLoop(b *testing.B, inflight int, one func(i int64) (time.Duration, bool)) {
	var (
		next      atomic.Int64
		latencies = make([]time.Duration, b.N)
		wg        sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for range inflight {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				latency, ok := one(i)
				if !ok {
					return
				}
				latencies[i] = latency
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if b.Failed() {
		return
	}
	slices.Sort(latencies)
	pct := func(p float64) float64 {
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds()) / 1000
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sagas/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(0, "ns/op")
}
