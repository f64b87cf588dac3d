package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/loadgen/generator"
)

// TestInventoryRestartUnderLoadCancelsNoGoodOrder is issue 10's defect 1
// end to end: good orders arrive at 20/s for 12 s; about 3 s in, the
// inventory service is SIGKILLed and, 3 s later, restarted on its port.
// (Payment is frozen for a moment before it, so that sagas are on their
// way to the inventory step when it dies.) A neighbour's short restart
// must not time a saga out: every good order is
// CONFIRMED, none cancelled and refunded (45 of 1,687 were, when a killed
// holder's idempotency claim lasted 60 s).
//
// The margin: a step retries until the saga deadline (saga.UntilDeadline),
// not for SAGA_STEP_ATTEMPTS calls only (7.5–15 s of backoff), and the
// orchestrator reconnects within about a second of the neighbour's return
// (grpcclient.ConnectParams), not up to grpc-go's 2 minutes. Measured with
// this test and a 12 s outage (2026-12-02, 2 cores): 16 of 240 good orders
// cancelled before, none after (outage 17 s under load, slowest saga 25 s);
// with 3 s both pass.
func TestInventoryRestartUnderLoadCancelsNoGoodOrder(t *testing.T) {
	const (
		rate  = 20
		total = 12 * rate
		down  = 3 * time.Second
	)
	e := NewEnv(t, envOptions{race: true})
	var shoppers []generator.Shopper
	for _, s := range e.shoppers {
		shoppers = append(shoppers, generator.Shopper{ID: s.id, Token: s.token})
	}
	mix, err := generator.ParseMix("good=1")
	require.NoError(t, err)

	// The kill lands once 3 s worth of orders were started.
	var once sync.Once
	killPoint := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		s   generator.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := generator.Run(ctx, generator.Config{
			Order:         e.PKI.Dial(e.Addr(svcOrder)),
			Orchestrator:  e.PKI.Dial(e.Addr(svcOrchestrator)),
			Shoppers:      shoppers,
			Rate:          rate,
			Count:         total,
			Mix:           mix,
			FollowTimeout: 90 * time.Second,
			PollInterval:  50 * time.Millisecond,
			Progress: func(s generator.Snapshot) {
				if s.Started >= 3*rate {
					once.Do(func() { close(killPoint) })
				}
			},
			ProgressInterval: 50 * time.Millisecond,
		})
		done <- result{s, err}
	}()
	select {
	case <-killPoint:
	case r := <-done:
		t.Fatalf("the run ended before the kill point: %+v %v", r.s, r.err)
	}
	// Only sagas already started meet the outage: while inventory is down
	// PlaceOrder cannot read the catalog and the generator's placements
	// wait and retry. So the kill must land with sagas running that still
	// have their inventory step to do. At 20 orders/s a saga passes that
	// step within milliseconds of its start, too fast to find three before
	// it by chance (this test failed so once the services got faster):
	// payment, the step before, is frozen (SIGSTOP, its calls hang
	// unanswered) until three sagas wait on it, inventory is killed, and
	// payment resumes, so that those sagas go on into the outage.
	e.Pause(svcPayment)
	var before int
	ok := poll(30*time.Second, 2*time.Millisecond, func() bool {
		err := e.DB[svcOrchestrator].QueryRow(context.Background(), `SELECT count(*) FROM sagas s WHERE state = 'RUNNING'
			AND NOT EXISTS (SELECT 1 FROM saga_steps st WHERE st.saga_id = s.id AND st.name = 'inventory' AND st.status = 'SUCCEEDED')`).Scan(&before)
		return err == nil && before >= 3
	})
	require.True(t, ok, "never 3 sagas before their inventory step (last %d)", before)
	e.Kill(svcInventory)
	killed := time.Now()
	e.Resume(svcPayment)
	// The outage lasts a fixed time, as an operator's restart would: this
	// waits for no condition.
	time.Sleep(time.Until(killed.Add(down)))
	e.Restart(svcInventory)
	back := time.Now()
	t.Logf("inventory SIGKILLed with %d sagas before their inventory step, restarted after %v, ready %v after the kill",
		before, down, back.Sub(killed).Round(time.Millisecond))

	r := <-done
	require.NoError(t, r.err)
	s := r.s
	require.False(t, s.Interrupted)
	require.Equal(t, total, s.Attempted)
	require.Equal(t, total, s.Placed, "errors %v", s.Errors)
	require.Equal(t, total, s.Terminal, "timed out %d, follow errors %d", s.TimedOut, s.FollowErr)

	// How long the system took to catch up: from inventory's return to the
	// last order's terminal transition (the order service's clock).
	var lastTerminal time.Time
	require.NoError(t, e.DB[svcOrder].QueryRow(context.Background(),
		`SELECT max(updated_at) FROM orders WHERE status IN ('CONFIRMED', 'CANCELLED')`).Scan(&lastTerminal))
	// The outage was felt: sagas retried their inventory step.
	var retried, maxAttempts int
	require.NoError(t, e.DB[svcOrchestrator].QueryRow(context.Background(),
		`SELECT count(*), coalesce(max(attempts), 0) FROM saga_steps WHERE name = 'inventory' AND phase = 'ACTION' AND attempts > 1`).
		Scan(&retried, &maxAttempts))

	var confirmed, cancelled int
	reasons := map[string]int{}
	for _, k := range s.Kinds {
		require.Equal(t, generator.KindGood, k.Kind)
		confirmed += k.Confirmed
		cancelled += k.Cancelled
		for r, n := range k.CancelReasons {
			reasons[r] += n
		}
	}
	t.Logf("%d good orders: %d confirmed, %d cancelled %v; %d sagas retried the inventory step (at most %d calls); drain %v after inventory was back; saga p50 %v p99 %v max %v",
		total, confirmed, cancelled, reasons, retried, maxAttempts, lastTerminal.Sub(back).Round(time.Millisecond),
		s.Saga.P50, s.Saga.P99, s.Saga.Max)
	require.Positive(t, retried, "no saga met the outage")
	require.Zero(t, cancelled, "good orders cancelled because a neighbour restarted: %v", reasons)
	require.Equal(t, total, confirmed)
	require.Zero(t, s.Unexpected)

	snap := e.CheckInvariants(t)
	for id, o := range snap.Orders {
		require.Equal(t, "CONFIRMED", o.Status, "order %s", id)
		require.Equal(t, "CAPTURED", snap.Payments[id].Status, "order %s: charged once, never refunded", id)
	}
}
