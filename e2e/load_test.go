package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/loadgen/generator"
)

// Every fault scenario (crash_test.go, faults_test.go) runs under load from
// the load generator: orders of the kinds in faultMix at faultRate per
// second, followed to their terminal state.
const (
	faultRate = 20
	faultMix  = "good=70,decline=15,oos=15"
	// faultFollow bounds following each order: far past the 30 s saga
	// deadline, and long enough to outlast the order service's restart,
	// whose PlaceOrder calls the generator retries with the same key.
	faultFollow = 3 * time.Minute
)

// load is the load generator running in the background of a scenario.
type load struct {
	count  int
	done   chan struct{}
	ended  time.Time // when the last order was terminal (the run ended)
	sum    generator.Summary
	err    error
	cancel context.CancelFunc
}

// startLoad places count orders at faultRate per second through e's order
// service, as e's shoppers, and follows each to its terminal state. The
// run is cancelled, and waited for, before the environment stops.
func startLoad(t *testing.T, e *Env, count int) *load {
	t.Helper()
	var shoppers []generator.Shopper
	for _, s := range e.shoppers {
		shoppers = append(shoppers, generator.Shopper{ID: s.id, Token: s.token})
	}
	mix, err := generator.ParseMix(faultMix)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	l := &load{count: count, done: make(chan struct{}), cancel: cancel}
	go func() {
		defer close(l.done)
		l.sum, l.err = generator.Run(ctx, generator.Config{
			Order:         e.PKI.Dial(e.Addr(svcOrder)),
			Orchestrator:  e.PKI.Dial(e.Addr(svcOrchestrator)),
			Shoppers:      shoppers,
			Rate:          faultRate,
			Count:         count,
			Mix:           mix,
			FollowTimeout: faultFollow,
			PollInterval:  50 * time.Millisecond,
		})
		l.ended = time.Now()
	}()
	// Registered after NewEnv, so it runs before the environment stops.
	t.Cleanup(func() { cancel(); <-l.done })
	return l
}

// wait waits until every order is placed and followed to its end, and
// checks what every fault run must end with: each order placed once and
// terminal, in the status its kind is owed (no good order cancelled: each
// fault is far shorter than the 30 s saga deadline), one saga per order,
// ended, and the auditor's invariants with the event checks of
// CheckInvariants (every outbox row on Kafka, each effect's event once).
// It returns the orders by status.
func (l *load) wait(t *testing.T, e *Env) map[string]int {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(5 * time.Minute):
		t.Fatal("the load generator did not finish within 5m")
	}
	sum := l.sum
	require.NoError(t, l.err)
	t.Logf("orders/s %.1f; saga p50 %v p99 %v; client retries %d; errors %v", sum.OrdersPerSec, sum.Saga.P50, sum.Saga.P99, sum.ClientRetries, sum.Errors)
	require.False(t, sum.Interrupted)
	require.Equal(t, l.count, sum.Placed, "every order placed (errors %v)", sum.Errors)
	require.Equal(t, l.count, sum.Terminal, "every order terminal (timed out %d, follow errors %d)", sum.TimedOut, sum.FollowErr)
	for _, k := range sum.Kinds {
		if k.Kind == generator.KindGood {
			require.Zero(t, k.Cancelled, "good orders cancelled: %v", k.CancelReasons)
		}
		require.Zero(t, k.Unexpected, "%s orders not %s: %+v", k.Kind, k.Expected, k)
	}

	s := e.CheckInvariants(t) // fails the test on any violation
	require.Len(t, s.Orders, l.count, "no order placed twice")
	byStatus := map[string]int{}
	for _, o := range s.Orders {
		byStatus[o.Status]++
	}
	for id, sagas := range s.Sagas {
		require.Len(t, sagas, 1, "order %s has one saga", id)
		require.Contains(t, []string{"COMPLETED", "COMPENSATED"}, sagas[0].State, "saga of order %s", id)
	}
	return byStatus
}

// faultRecord is what one fault scenario records: orders placed, faults
// injected, auditor violations (a run with any fails before it records),
// events on Kafka more than once (the relay publishes at least once; the
// consumers dedupe), the time from the fault to the system serving again
// (restart, reconnect) and to the last order terminal (drain).
type faultRecord struct {
	scenario       string
	placed, faults int
	violations     int
	redeliveries   int
	recover, drain time.Duration
	took           time.Duration
}

// faultTable prints records one line each, for the test log.
func faultTable(title string, records []faultRecord) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:\n%-36s %6s %6s %10s %12s %9s %9s %9s\n", title, "scenario", "orders", "faults", "violations", "redelivered", "recover", "drain", "total")
	for _, r := range records {
		fmt.Fprintf(&b, "%-36s %6d %6d %10d %12d %9s %9s %9s\n", r.scenario, r.placed, r.faults, r.violations, r.redeliveries,
			r.recover.Round(100*time.Millisecond), r.drain.Round(100*time.Millisecond), r.took.Round(100*time.Millisecond))
	}
	return b.String()
}
