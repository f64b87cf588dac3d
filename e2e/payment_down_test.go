package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPaymentServiceDown takes the payment service away while orders are
// placed. Sagas either wait and finish, or time out and compensate
// cleanly; in every case the invariants hold once it is back.
func TestPaymentServiceDown(t *testing.T) {
	const orders = 10

	// A hung payment (SIGSTOP: its socket accepts calls nobody answers)
	// makes every call time out; the step retries, and once payment
	// answers again, within the retry budget and the saga deadline, every
	// saga finishes: each order CONFIRMED, paid once.
	t.Run("hung within the deadline: sagas wait and finish", func(t *testing.T) {
		e := NewEnv(t, envOptions{race: true, vars: map[string]map[string]string{
			// Three attempts of 3 s each fit in the 30 s deadline.
			svcOrchestrator: {"SAGA_STEP_TIMEOUT": "3s"},
		}})
		e.Pause(svcPayment)
		ids := placeHappyOrders(t, e, orders)
		// Resume once every saga's first payment call has timed out and its
		// retry is in flight.
		waitSteps(t, e, ids, `name = 'payment' AND phase = 'ACTION' AND status = 'RUNNING' AND attempts >= 2`, 60*time.Second)
		e.Resume(svcPayment)

		statuses := e.WaitOrders(t, ids, sagaTimeout)
		s := e.CheckInvariants(t)
		for _, id := range ids {
			require.Equal(t, "CONFIRMED", statuses[id], "order %s (saga %+v)", id, s.Sagas[id][0])
			require.Equal(t, "CAPTURED", s.Payments[id].Status)
		}
	})

	// A payment process that is killed refuses connections: each call
	// fails at once (Unavailable, an unknown outcome the orchestrator
	// retries with the same key). It is restarted on the same port as soon
	// as every saga has retried its payment call, far within the 30 s saga
	// deadline, and the sagas wait for it and finish, every order
	// CONFIRMED: a step is retried until the saga deadline
	// (SAGA_STEP_BUDGET unset; SAGA_STEP_ATTEMPTS is only the least number
	// of calls), and the orchestrator's connection reconnects within about
	// a second of payment's return (grpcclient.ConnectParams). The
	// invariants are checked before the outcome.
	t.Run("killed and restarted within the deadline: sagas wait and finish", func(t *testing.T) {
		e := NewEnv(t, envOptions{race: true})
		e.Kill(svcPayment)
		ids := placeHappyOrders(t, e, orders)
		waitSteps(t, e, ids, `name = 'payment' AND attempts >= 2`, 60*time.Second)
		down := time.Now()
		e.Restart(svcPayment)
		back := time.Since(down)

		statuses := e.WaitOrders(t, ids, 2*time.Minute)
		s := e.CheckInvariants(t)
		t.Logf("payment back %s after the sagas' first retry; outcomes: %v; %s", back.Round(time.Millisecond), count(statuses), reasons(s, ids))
		t.Logf("the customer reads (GetOrder) cancel_reason %q", e.WaitOrder(t, ids[0], time.Second).GetCancelReason())
		require.Equal(t, map[string]int{"CONFIRMED": len(ids)}, count(statuses),
			"payment was back %s after the sagas started retrying, within their 30 s deadline, yet they did not wait; %s",
			back.Round(time.Millisecond), reasons(s, ids))
	})

	// Payment hangs past a 3 s saga deadline: the call in flight is cut at
	// the deadline and the saga compensates ("saga deadline exceeded").
	// The payment step's outcome is unknown to the saga, so it is
	// compensated directly — RefundPayment, which waits for payment — and
	// ProcessPayment is never called again: the saga does not charge the
	// card only to refund it. Meanwhile nothing is reserved and nothing
	// captured; once payment answers again every order is CANCELLED, its
	// payment absent, VOIDED, or refunded (a call cut by the deadline may
	// still have been read by the paused service), and the invariants hold.
	t.Run("hung past a short deadline: sagas compensate cleanly", func(t *testing.T) {
		e := NewEnv(t, envOptions{race: true, vars: map[string]map[string]string{
			svcOrchestrator: {"SAGA_DEADLINE": "3s"},
		}})
		e.Pause(svcPayment)
		ids := placeHappyOrders(t, e, orders)
		waitSagas(t, e, ids, `state = 'COMPENSATING' AND deadline < now()`, 60*time.Second)

		ctx := context.Background()
		var reserved, paid int
		require.NoError(t, e.DB[svcInventory].QueryRow(ctx,
			`SELECT count(*) FROM reservations WHERE order_id = ANY($1::uuid[])`, ids).Scan(&reserved))
		require.NoError(t, e.DB[svcPayment].QueryRow(ctx,
			`SELECT count(*) FROM payments WHERE order_id = ANY($1::uuid[])`, ids).Scan(&paid))
		require.Zero(t, reserved, "stock reserved while payment was down")
		require.Zero(t, paid, "payments while payment was down")

		e.Resume(svcPayment)
		statuses := e.WaitOrders(t, ids, 2*time.Minute)
		s := e.CheckInvariants(t)
		refunded := 0
		for _, id := range ids {
			require.Equal(t, "CANCELLED", statuses[id], "order %s", id)
			require.Equal(t, "COMPENSATED", s.Sagas[id][0].State)
			if r := s.Reservations[id]; r != nil {
				require.Empty(t, r.Lines, "order %s reserved stock", id)
			}
			if p := s.Payments[id]; p != nil && p.Status != "VOIDED" {
				require.Equal(t, "REFUNDED", p.Status, "order %s", id)
				refunded++
			}
		}
		t.Logf("%d of %d orders were charged by the call cut at the deadline, then refunded; %s",
			refunded, len(ids), reasons(s, ids))
		for _, id := range ids {
			require.Contains(t, s.Sagas[id][0].FailureReason, "deadline exceeded", "order %s", id)
		}
		// Compensation never calls a forward action: no action call is
		// started once a saga began to compensate, and the payment step was
		// undone by its compensation.
		var late, undone int
		require.NoError(t, e.DB[svcOrchestrator].QueryRow(ctx, `SELECT count(*) FROM saga_audit a JOIN sagas s ON s.id = a.saga_id
			WHERE s.correlation_id = ANY($1) AND a.action = 'step.started' AND a.detail->>'phase' = 'ACTION'
			AND a.id > (SELECT min(c.id) FROM saga_audit c WHERE c.saga_id = s.id AND c.action = 'saga.compensating')`, ids).Scan(&late))
		require.Zero(t, late, "action calls after compensation began")
		require.NoError(t, e.DB[svcOrchestrator].QueryRow(ctx, `SELECT count(*) FROM saga_steps st JOIN sagas s ON s.id = st.saga_id
			WHERE s.correlation_id = ANY($1) AND st.name = 'payment' AND st.phase = 'COMPENSATION' AND st.status = 'SUCCEEDED'`, ids).Scan(&undone))
		require.Equal(t, len(ids), undone, "every payment step, of unknown outcome, was compensated")
	})
}

// placeHappyOrders places n orders that would confirm if nothing failed.
func placeHappyOrders(t *testing.T, e *Env, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = e.MustPlaceOrder(t, items(plentySKUs[i%len(plentySKUs)], 1), cardOK).GetOrderId()
	}
	return ids
}

// waitSagas waits until the sagas of every order in ids match where (an
// SQL condition on sagas).
func waitSagas(t *testing.T, e *Env, ids []string, where string, timeout time.Duration) {
	t.Helper()
	var n int
	ok := poll(timeout, 20*time.Millisecond, func() bool {
		err := e.DB[svcOrchestrator].QueryRow(context.Background(),
			`SELECT count(*) FROM sagas WHERE correlation_id = ANY($1) AND `+where, ids).Scan(&n)
		return err == nil && n == len(ids)
	})
	require.True(t, ok, "%d of %d sagas with %s after %s\n%s", n, len(ids), where, timeout, e.sagaSummary(t))
}

// waitSteps waits until the saga of every order in ids has a step row
// matching where (an SQL condition on saga_steps).
func waitSteps(t *testing.T, e *Env, ids []string, where string, timeout time.Duration) {
	t.Helper()
	var n int
	ok := poll(timeout, 20*time.Millisecond, func() bool {
		err := e.DB[svcOrchestrator].QueryRow(context.Background(), `SELECT count(DISTINCT s.id) FROM sagas s
			JOIN saga_steps st ON st.saga_id = s.id WHERE s.correlation_id = ANY($1) AND `+where, ids).Scan(&n)
		return err == nil && n == len(ids)
	})
	require.True(t, ok, "%d of %d sagas with a step %s after %s\n%s", n, len(ids), where, timeout, e.sagaSummary(t))
}

func count(statuses map[string]string) map[string]int {
	out := map[string]int{}
	for _, s := range statuses {
		out[s]++
	}
	return out
}

// reasons summarizes the failure reasons of the sagas of ids.
func reasons(s *Snapshot, ids []string) string {
	out := map[string]int{}
	for _, id := range ids {
		if sg := s.Sagas[id]; len(sg) == 1 && sg[0].FailureReason != "" {
			out[sg[0].FailureReason]++
		}
	}
	return fmt.Sprintf("failure reasons: %v", out)
}
