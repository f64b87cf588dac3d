package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

// TestOrchestratorKilledMidFlight places 200 orders, SIGKILLs the
// orchestrator in the middle of them, restarts it on the same database and
// port, and checks that every saga ends, that the invariants hold and that
// nothing was done twice (one payment and one reservation per order, each
// effect's event once, money and stock balanced).
//
// The order mix exercises every path through the crash: a tenth of the
// cards decline, a tenth of the orders compete for 10 units of SKU-LIMITED
// (half of them are refunded), the rest confirm.
func TestOrchestratorKilledMidFlight(t *testing.T) {
	// Sagas start one after the other from the inbox consumer and each
	// takes well under a second, so only a few are in flight at any time:
	// the kill lands when half the sagas exist and at least one step call
	// is in flight; the orders keep coming while the orchestrator is down.
	t.Run("half the sagas started", func(t *testing.T) {
		killMidFlight(t, false)
	})
	// Payment is frozen (SIGSTOP) so that sagas pile up in its step: the
	// kill lands with 60 sagas waiting on a payment call (nearly all of the
	// default SAGA_WORKERS=64, which bound the sagas a replica runs at once:
	// with all of them blocked, the consumer starts no more), before any
	// call has timed out; payment resumes only after the orchestrator died,
	// so it answers calls whose caller is gone; the restarted orchestrator
	// calls again with the same idempotency keys.
	t.Run("half the sagas waiting on payment", func(t *testing.T) {
		killMidFlight(t, true)
	})
}

func killMidFlight(t *testing.T, stallPayment bool) {
	const (
		total   = 200
		limited = 10 // units of SKU-LIMITED; 20 orders want one each
		placers = 16
	)
	e := NewEnv(t, envOptions{race: true})
	e.SetStock(t, "SKU-LIMITED", limited)
	if stallPayment {
		e.Pause(svcPayment)
	}

	ids := make([]string, total)
	var wg sync.WaitGroup
	next := make(chan int)
	for range placers {
		wg.Go(func() {
			for i := range next {
				lines, method := mixedOrder(i)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				o, err := e.PlaceOrder(ctx, lines, method)
				cancel()
				if assertNoError(t, err) {
					ids[i] = o.GetOrderId()
				}
			}
		})
	}
	go func() {
		defer close(next)
		for i := range total {
			next <- i
		}
	}()

	// A step row is RUNNING from just before its remote call until its
	// outcome is stored: that is "mid-flight".
	var sagas, active, calls int
	ready := func() bool {
		if stallPayment {
			return calls >= 60
		}
		return sagas >= total/2 && calls > 0
	}
	ok := poll(2*time.Minute, 2*time.Millisecond, func() bool {
		err := e.DB[svcOrchestrator].QueryRow(context.Background(), `SELECT
			(SELECT count(*) FROM sagas),
			(SELECT count(*) FROM sagas WHERE state IN ('RUNNING', 'COMPENSATING')),
			(SELECT count(*) FROM saga_steps WHERE status = 'RUNNING')`).Scan(&sagas, &active, &calls)
		return err == nil && ready()
	})
	require.True(t, ok, "kill point never reached (last: %d sagas, %d active, %d step calls in flight)", sagas, active, calls)
	e.Kill(svcOrchestrator)
	killed := time.Now()
	t.Logf("SIGKILL with %d sagas created, %d RUNNING or COMPENSATING, %d step calls in flight", sagas, active, calls)
	// The sagas the dead replica held: the restarted one (another replica
	// id) must take each over once its lease expires.
	var held []uuid.UUID
	rows, err := e.DB[svcOrchestrator].Query(context.Background(),
		`SELECT id FROM sagas WHERE state IN ('RUNNING', 'COMPENSATING') AND lease_owner <> ''`)
	require.NoError(t, err)
	for rows.Next() {
		var id uuid.UUID
		require.NoError(t, rows.Scan(&id))
		held = append(held, id)
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, held)
	if stallPayment {
		e.Resume(svcPayment)
	}
	e.Restart(svcOrchestrator)
	restarted := time.Since(killed)
	wg.Wait()
	require.NotContains(t, ids, "", "every order was placed")

	statuses := e.WaitOrders(t, ids, 3*time.Minute)
	t.Logf("all %d orders terminal %s after the kill", total, time.Since(killed).Round(time.Millisecond))
	s := e.CheckInvariants(t)
	require.Len(t, s.Orders, total)

	got := map[string]int{}
	for _, st := range statuses {
		got[st]++
	}
	var claimed, repeated int
	require.NoError(t, e.DB[svcOrchestrator].QueryRow(context.Background(), `SELECT
		(SELECT count(DISTINCT saga_id) FROM saga_audit WHERE action = 'saga.claimed'),
		(SELECT count(*) FROM saga_steps WHERE attempts > 1)`).Scan(&claimed, &repeated))
	t.Logf("outcomes %v; %d sagas taken over by the restarted orchestrator, %d steps called more than once", got, claimed, repeated)
	require.Positive(t, claimed, "the restarted orchestrator resumed the killed one's sagas")
	// Takeover: every saga the dead replica held is claimed once its lease
	// (SAGA_LEASE_TTL, 3 s, renewed every second) has expired and the
	// restarted replica polls (500 ms) — or at once, if restarting took
	// longer than the lease. With the former 10 s leases this took 11 s.
	var takenOver int
	var lastClaim time.Time
	require.NoError(t, e.DB[svcOrchestrator].QueryRow(context.Background(), `SELECT count(*), max(first) FROM (
		SELECT min(created_at) AS first FROM saga_audit WHERE action = 'saga.claimed' AND saga_id = ANY($1) GROUP BY saga_id) c`,
		held).Scan(&takenOver, &lastClaim))
	require.Equal(t, len(held), takenOver, "every saga the dead replica held was taken over")
	takeover := lastClaim.Sub(killed)
	t.Logf("takeover: the %d sagas the killed replica held were all claimed %s after the SIGKILL (restart took %s)",
		len(held), takeover.Round(time.Millisecond), restarted.Round(time.Millisecond))
	require.Less(t, takeover, max(restarted, 3*time.Second)+3*time.Second,
		"claimed within a lease, a poll and the time to claim them all of the kill, or soon after the restart")
	reasons := map[string]int{}
	for _, sagas := range s.Sagas {
		if r := sagas[0].FailureReason; r != "" {
			reasons[r]++
		}
	}
	t.Logf("failure reasons of the compensated sagas: %v", reasons)
	// Declined cards and the SKU-LIMITED orders past the stock are the
	// only cancellations a healthy run has; the crash adds none.
	require.Equal(t, total/10+(total/10-limited), got["CANCELLED"], "cancellations")
	require.Zero(t, s.Products["SKU-LIMITED"].Available)
}

// mixedOrder is the i-th order of a mixed load: every tenth card declines,
// every tenth order (offset 1) wants one unit of SKU-LIMITED, the others
// buy one or two lines of the plentiful SKUs.
func mixedOrder(i int) ([]*orderv1.OrderItemInput, string) {
	a, b := plentySKUs[i%len(plentySKUs)], plentySKUs[(i+1)%len(plentySKUs)]
	switch {
	case i%10 == 0:
		return items(a, 1), cardDecline
	case i%10 == 1:
		return items("SKU-LIMITED", 1), cardOK
	case i%3 == 0:
		return items(a, 1+i%3, b, 1), cardOK
	default:
		return items(a, 1), cardOK
	}
}
