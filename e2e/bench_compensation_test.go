package e2e

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/event"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

// compensationInflight is how many failing orders BenchmarkOrderCompensation
// keeps between PlaceOrder and CANCELLED: a loaded system, not a saturated
// one (see BenchmarkOrderSaga's inflight=8).
const compensationInflight = 8

// BenchmarkOrderCompensation measures the order saga turning back across
// the five binaries (plain builds), everything on this machine: orders
// that fail at a step, fail=declined (the payment service declines the
// card: nothing to undo but the order, which is cancelled) and
// fail=out_of_stock (the inventory refuses the reservation: the payment is
// refunded, then the order cancelled). A refused confirmation cannot be
// provoked from outside: only the orchestrator may cancel an order, so
// ConfirmOrder is never refused in a healthy run; the engine's
// BenchmarkSagaCompensation/fail=confirm covers that path.
//
// compensationInflight orders are in flight at once (closed loop). Metrics:
// sagas/s (cancelled orders over the time from the first PlaceOrder to the
// last cancellation), p50_ms and p99_ms of the compensation (the failed
// step's end to the saga's end, COMPENSATED, both as the orchestrator
// stored them), and cancel_p50_ms / cancel_p99_ms of what the customer
// sees (PlaceOrder to the order.cancelled event's occurred-at).
//
//	go test -run '^$' -bench BenchmarkOrderCompensation -benchtime 300x -count 3 ./e2e/
func BenchmarkOrderCompensation(b *testing.B) {
	e := NewEnv(b, envOptions{race: false})
	for _, sku := range plentySKUs {
		e.SetStock(b, sku, 1_000_000_000)
	}
	// The short SKU: every reservation of it is refused.
	e.SetStock(b, shortSKU, 0)

	w := newWatcher()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	require.NoError(b, tailTopic(ctx, e.Broker.Addr(), event.TopicOrder, w.deliver))

	kinds := []struct {
		name    string
		lines   func() []*orderv1.OrderItemInput
		payWith string
		failed  string // the saga step that refuses
	}{
		{"declined", func() []*orderv1.OrderItemInput { return items(plentySKUs[0], 1) }, cardDecline, "payment"},
		{"out_of_stock", func() []*orderv1.OrderItemInput { return items(shortSKU, 1) }, cardOK, "inventory"},
	}
	// Warm-up: connections, pools, the first relay batches.
	warm := runCancelled(ctx, e, w, compensationInflight, 50, kinds[0].lines, kinds[0].payWith)
	require.NoError(b, warm.err())

	for _, k := range kinds {
		b.Run("fail="+k.name, func(b *testing.B) {
			measured := time.Now()
			st := runCancelled(ctx, e, w, compensationInflight, b.N, k.lines, k.payWith)
			b.StopTimer()
			require.NoError(b, st.err())
			require.Len(b, st.lat, b.N, "every order cancelled")

			comp := compensationTimes(b, e, measured, k.failed, b.N)
			require.Len(b, comp, b.N, "every saga compensated after its %s step failed", k.failed)
			slices.Sort(comp)
			slices.Sort(st.lat)
			q := func(v []time.Duration, p float64) float64 {
				return float64(v[min(len(v)-1, int(p*float64(len(v))))]) / float64(time.Millisecond)
			}
			b.ReportMetric(float64(len(st.lat))/st.last.Sub(st.first).Seconds(), "sagas/s")
			b.ReportMetric(q(comp, 0.50), "p50_ms")
			b.ReportMetric(q(comp, 0.99), "p99_ms")
			b.ReportMetric(q(st.lat, 0.50), "cancel_p50_ms")
			b.ReportMetric(q(st.lat, 0.99), "cancel_p99_ms")
			b.ReportMetric(0, "ns/op") // the loop only admits orders; sagas/s is the rate
			b.Logf("%d sagas, %d in flight; load average %s", b.N, compensationInflight, loadavg())
		})
	}
}

// shortSKU is the seeded SKU the benchmark leaves without stock.
const shortSKU = "SKU-LIMITED"

// runCancelled places n orders, at most inflight at once, each expected to
// end CANCELLED, and collects PlaceOrder → order.cancelled latencies.
func runCancelled(ctx context.Context, e *Env, w *watcher, inflight, n int, lines func() []*orderv1.OrderItemInput, payWith string) *runStats {
	st := &runStats{}
	sem := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
			defer pcancel()
			start := time.Now()
			o, err := e.PlaceOrder(pctx, lines(), payWith)
			placed := time.Now()
			if err != nil {
				st.fail(fmt.Errorf("PlaceOrder: %w", err))
				return
			}
			// wait reports a cancellation as an error, with its event.
			ev, err := w.wait(pctx, o.GetOrderId())
			if ev.Type != event.OrderCancelled {
				st.fail(fmt.Errorf("order %s: want %s: %w", o.GetOrderId(), event.OrderCancelled, err))
				return
			}
			st.add(start, placed, ev)
		})
	}
	wg.Wait()
	return st
}

// compensationTimes returns, for each of the n sagas started since since
// whose step failed (refused), the time from that step's end to the saga's
// end; a saga in any other state fails the benchmark. The order's
// cancellation, the last undo, is published before the saga records its
// end: it waits for all n to have ended.
func compensationTimes(tb testing.TB, e *Env, since time.Time, failed string, n int) []time.Duration {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const from = `FROM sagas s JOIN saga_steps f ON f.saga_id = s.id AND f.phase = 'ACTION' AND f.status = 'FAILED'
		WHERE s.created_at >= $1 AND f.name = $2 AND s.ended_at IS NOT NULL AND f.ended_at IS NOT NULL`
	require.Eventually(tb, func() bool {
		var ended int
		require.NoError(tb, e.DB[svcOrchestrator].QueryRow(ctx, `SELECT count(*) `+from, since, failed).Scan(&ended))
		return ended >= n
	}, 30*time.Second, 20*time.Millisecond, "%d sagas ended", n)
	rows, err := e.DB[svcOrchestrator].Query(ctx, `SELECT s.state, EXTRACT(EPOCH FROM s.ended_at - f.ended_at)::float8 `+from, since, failed)
	require.NoError(tb, err)
	defer rows.Close()
	var out []time.Duration
	for rows.Next() {
		var (
			state string
			secs  float64
		)
		require.NoError(tb, rows.Scan(&state, &secs))
		require.Equal(tb, "COMPENSATED", state)
		out = append(out, time.Duration(secs*float64(time.Second)))
	}
	require.NoError(tb, rows.Err())
	return out
}
