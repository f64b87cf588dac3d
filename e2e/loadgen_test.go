package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/loadgen/generator"
)

// TestLoadGenerator runs the load generator (the loadgen binary's library)
// against the five binaries for 30 orders of every kind and checks that
// its summary tells what the databases hold: good and hot orders
// CONFIRMED, declined and out-of-stock ones CANCELLED (for the card and
// for the stock), each with the saga end to match, and client retries with the same key returning the same
// order (no order is placed twice).
func TestLoadGenerator(t *testing.T) {
	e := NewEnv(t, envOptions{race: true})
	var shoppers []generator.Shopper
	for _, s := range e.shoppers {
		shoppers = append(shoppers, generator.Shopper{ID: s.id, Token: s.token})
	}
	mix, err := generator.ParseMix(generator.DefaultMix)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := generator.Run(ctx, generator.Config{
		Order:         e.PKI.Dial(e.Addr(svcOrder)),
		Orchestrator:  e.PKI.Dial(e.Addr(svcOrchestrator)),
		Shoppers:      shoppers,
		Rate:          15,
		Count:         30,
		Mix:           mix,
		RetryFraction: 0.2,
		FollowTimeout: sagaTimeout,
		PollInterval:  50 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Logf("orders/s %.1f; saga p50 %v p95 %v p99 %v; errors %v", s.OrdersPerSec, s.Saga.P50, s.Saga.P95, s.Saga.P99, s.Errors)

	require.False(t, s.Interrupted)
	require.Equal(t, 30, s.Attempted)
	require.Equal(t, 30, s.Placed, "errors %v", s.Errors)
	require.Equal(t, 30, s.Terminal, "timed out %d, follow errors %d", s.TimedOut, s.FollowErr)
	require.Zero(t, s.Unexpected)
	require.Equal(t, generator.RetrySummary{Sent: 6, SameOrder: 6}, s.Retries)
	require.Equal(t, 30, s.Saga.Count)
	require.Positive(t, s.Saga.P50)
	require.LessOrEqual(t, s.Saga.P50, s.Saga.P99)

	type counts struct{ confirmed, cancelled int }
	byKind := map[generator.Kind]counts{}
	sagaStates, reasons := map[string]int{}, map[string]int{}
	for _, k := range s.Kinds {
		byKind[k.Kind] = counts{k.Confirmed, k.Cancelled}
		for st, n := range k.SagaStates {
			sagaStates[string(k.Kind)+" "+st] += n
		}
		for r, n := range k.CancelReasons {
			reasons[string(k.Kind)+": "+r] += n
		}
	}
	require.Equal(t, map[generator.Kind]counts{
		generator.KindGood:       {confirmed: 21},
		generator.KindDecline:    {cancelled: 3},
		generator.KindOutOfStock: {cancelled: 3},
		generator.KindHot:        {confirmed: 3},
	}, byKind)
	require.Equal(t, map[string]int{
		"good COMPLETED": 21, "hot COMPLETED": 3, "decline COMPENSATED": 3, "oos COMPENSATED": 3,
	}, sagaStates)
	require.Equal(t, map[string]int{
		"decline: payment declined (card_declined)": 3, "oos: insufficient stock": 3,
	}, reasons, "each kind fails for its own reason")

	// The databases agree: 30 orders (a retry placed none), 24 confirmed,
	// 6 cancelled, and the system's invariants hold.
	snap := e.CheckInvariants(t)
	byStatus := map[string]int{}
	for _, o := range snap.Orders {
		byStatus[o.Status]++
	}
	require.Equal(t, map[string]int{"CONFIRMED": 24, "CANCELLED": 6}, byStatus)
}
