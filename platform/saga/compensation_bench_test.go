package saga_test

import (
	"context"
	"errors"
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

// BenchmarkSagaCompensation runs the checkout's shape on the engine alone
// (no-op steps "payment", "stock" and the pivot "confirm", each with a
// no-op compensation, the pivot without one) where one step refuses for
// good (saga.Permanent): fail=payment (declined: nothing to undo),
// fail=stock (short: the payment is refunded), fail=confirm (refused: the
// stock is released, then the payment refunded). Each of 16 clients starts
// a saga and waits for its end (closed loop). It reports sagas/s and the
// compensation latency percentiles: from the refusal (the failing action's
// return) to the saga stored COMPENSATED.
//
//	go test -run '^$' -bench SagaCompensation -benchtime 2000x -count 5 ./saga/
func BenchmarkSagaCompensation(b *testing.B) {
	for _, fail := range []string{"payment", "stock", "confirm"} {
		b.Run("fail="+fail, func(b *testing.B) {
			benchmarkCompensation(b, fail, 16)
		})
	}
}

var errRefused = errors.New("refused by the benchmark")

func benchmarkCompensation(b *testing.B, fail string, inflight int) {
	url, _ := pgtest.NewDatabase(b, migrations)
	pool, err := pgxpool.New(context.Background(), url+"&pool_max_conns=24")
	require.NoError(b, err)
	b.Cleanup(pool.Close)

	// failedAt holds the moment each saga's refusal returned; ended is
	// closed at its outcome.
	var failedAt, ended sync.Map
	endCh := func(id uuid.UUID) chan saga.State {
		ch, _ := ended.LoadOrStore(id, make(chan saga.State, 1))
		return ch.(chan saga.State)
	}
	noop := func(context.Context, *saga.Execution) error { return nil }
	action := func(name string) saga.Func {
		if name != fail {
			return noop
		}
		return func(_ context.Context, x *saga.Execution) error {
			failedAt.Store(x.SagaID, time.Now())
			return saga.Permanent(errRefused)
		}
	}
	def := &saga.Definition{Name: "bench_compensation", Steps: saga.Sequence(
		saga.Step{Name: "payment", Action: action("payment"), Compensate: noop},
		saga.Step{Name: "stock", Action: action("stock"), Compensate: noop},
		saga.Step{Name: "confirm", Action: action("confirm"), Pivot: true},
	)}
	opts := saga.Options{Owner: "bench"} // production defaults
	opts.Workers = inflight
	opts.Logger = slog.New(slog.DiscardHandler)
	opts.OnFinish = func(id uuid.UUID, st saga.State) { endCh(id) <- st }
	e := startEngine(b, pool, opts, def)

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
				r, err := e.Start(context.Background(), saga.StartRequest{
					Type: def.Name, CorrelationID: fmt.Sprintf("order-%d", i), StartedBy: "bench",
					Data: []byte(`{"order_id":"…","amount":1999,"payment_method":"tok_visa"}`),
				})
				if err != nil {
					b.Error(err)
					return
				}
				st := <-endCh(r.SagaID)
				end := time.Now()
				if st != saga.StateCompensated {
					b.Errorf("saga %s ended %s, want %s", r.SagaID, st, saga.StateCompensated)
					return
				}
				t0, ok := failedAt.Load(r.SagaID)
				if !ok {
					b.Errorf("saga %s compensated without its refusal", r.SagaID)
					return
				}
				latencies[i] = end.Sub(t0.(time.Time))
				failedAt.Delete(r.SagaID)
				ended.Delete(r.SagaID)
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
