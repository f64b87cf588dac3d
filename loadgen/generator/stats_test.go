package generator

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

const ms = time.Millisecond

func TestPercentileNearestRank(t *testing.T) {
	t.Parallel()
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i)*ms)
	}
	require.Equal(t, 50*ms, percentile(hundred, 50))
	require.Equal(t, 95*ms, percentile(hundred, 95))
	require.Equal(t, 99*ms, percentile(hundred, 99))
	require.Equal(t, 100*ms, percentile(hundred, 100))
	require.Equal(t, 1*ms, percentile(hundred, 0.1))

	five := []time.Duration{10 * ms, 20 * ms, 30 * ms, 40 * ms, 50 * ms}
	require.Equal(t, 30*ms, percentile(five, 50))
	require.Equal(t, 50*ms, percentile(five, 95), "few samples: the top one")
	require.Equal(t, 7*ms, percentile([]time.Duration{7 * ms}, 99))
	require.Zero(t, percentile(nil, 50))
}

func TestSummarizeSortsAndAverages(t *testing.T) {
	t.Parallel()
	l := summarize([]time.Duration{40 * ms, 10 * ms, 30 * ms, 20 * ms})
	require.Equal(t, Latency{Count: 4, Min: Millis(10 * ms), Mean: Millis(25 * ms), P50: Millis(20 * ms),
		P95: Millis(40 * ms), P99: Millis(40 * ms), Max: Millis(40 * ms)}, l)
	require.Equal(t, Latency{}, summarize(nil))
}

func TestSummaryCountsOutcomesByKind(t *testing.T) {
	t.Parallel()
	confirmed, cancelled := orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, orderv1.OrderStatus_ORDER_STATUS_CANCELLED
	outcomes := []outcome{
		{kind: KindGood, placed: true, status: confirmed, saga: 100 * ms, observed: 150 * ms, place: 5 * ms, retry: retrySame, sagaState: "COMPLETED"},
		{kind: KindGood, placed: true, status: confirmed, saga: 300 * ms, observed: 350 * ms, place: 7 * ms, throttled: 2},
		{kind: KindGood, placed: true, status: cancelled, reason: "insufficient stock", saga: 200 * ms, observed: 250 * ms, place: 6 * ms}, // unexpected
		{kind: KindGood, placeErr: "InvalidArgument"},
		{kind: KindDecline, placed: true, status: cancelled, saga: 400 * ms, observed: 420 * ms, place: 5 * ms, retry: retryDifferent, clientRetry: 1},
		{kind: KindOutOfStock, placed: true, timedOut: true, place: 5 * ms, retry: retryFailed},
		{kind: KindHot, placed: true, followErr: "PermissionDenied", place: 5 * ms},
		{kind: KindHot, placed: true, abandoned: true, place: 5 * ms},
		{kind: KindHot, abandoned: true},
	}
	s := summary(Summary{Mode: "concurrency 2"}, outcomes, 2*time.Second, 4*time.Second)

	require.Equal(t, 9, s.Attempted)
	require.Equal(t, 7, s.Placed)
	require.Equal(t, 1, s.PlaceFailed)
	require.Equal(t, 4, s.Terminal)
	require.Equal(t, 1, s.TimedOut)
	require.Equal(t, 1, s.FollowErr)
	require.Equal(t, 2, s.Abandoned)
	require.Equal(t, 1, s.Unexpected)
	require.InDelta(t, 3.5, s.OrdersPerSec, 1e-9, "placed over the dispatch window")
	require.InDelta(t, 1.0, s.TerminalPerSec, 1e-9, "terminal over the whole run")
	require.Equal(t, Millis(4*time.Second), s.Elapsed)
	require.Equal(t, RetrySummary{Sent: 3, SameOrder: 1, Different: 1, Failed: 1}, s.Retries)
	require.Equal(t, 2, s.Throttled)
	require.Equal(t, 1, s.ClientRetries)
	require.Equal(t, map[string]int{"place: InvalidArgument": 1, "get: PermissionDenied": 1}, s.Errors)

	require.Equal(t, 4, s.Saga.Count)
	require.Equal(t, Millis(200*ms), s.Saga.P50)
	require.Equal(t, Millis(400*ms), s.Saga.P99)
	require.Equal(t, Millis(250*ms), s.Saga.Mean)
	require.Equal(t, Millis(250*ms), s.Observed.P50)
	require.Equal(t, 7, s.Place.Count)

	require.Len(t, s.Kinds, 4)
	good := s.Kinds[0]
	require.Equal(t, KindSummary{
		Kind: KindGood, Expected: "ORDER_STATUS_CONFIRMED", Attempted: 4, Placed: 3, PlaceFailed: 1,
		Confirmed: 2, Cancelled: 1, Unexpected: 1, SagaStates: map[string]int{"COMPLETED": 1},
		CancelReasons: map[string]int{"insufficient stock": 1},
		Saga:          summarize([]time.Duration{100 * ms, 300 * ms, 200 * ms}),
	}, good)
	require.Equal(t, 1, s.Kinds[1].Cancelled)
	require.Zero(t, s.Kinds[1].Unexpected, "a declined card is owed CANCELLED")
	require.Equal(t, 1, s.Kinds[2].TimedOut)
	require.Equal(t, KindHot, s.Kinds[3].Kind)
	require.Equal(t, 2, s.Kinds[3].Abandoned)
	require.Equal(t, 1, s.Kinds[3].FollowErr)
}

func TestSummaryListsOnlyTheKindsRun(t *testing.T) {
	t.Parallel()
	s := summary(Summary{}, []outcome{{kind: KindHot, placed: true, status: orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, saga: ms}}, time.Second, time.Second)
	require.Len(t, s.Kinds, 1)
	require.Equal(t, KindHot, s.Kinds[0].Kind)
}

func TestSummaryJSONIsInMilliseconds(t *testing.T) {
	t.Parallel()
	raw, err := json.Marshal(Latency{Count: 1, P50: Millis(1500 * time.Microsecond), Max: Millis(2 * time.Second)})
	require.NoError(t, err)
	require.JSONEq(t, `{"count":1,"min_ms":0,"mean_ms":0,"p50_ms":1.5,"p95_ms":0,"p99_ms":0,"max_ms":2000}`, string(raw))
}

func TestSnapshotIsTheLiveView(t *testing.T) {
	t.Parallel()
	start := time.Now()
	r := newRecorder(start)
	for range 5 {
		r.begin()
	}
	for range 4 {
		r.placedOne()
	}
	r.finish(outcome{kind: KindGood, placed: true, status: orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, saga: 100 * ms})
	r.finish(outcome{kind: KindGood, placed: true, status: orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, saga: 300 * ms})
	r.finish(outcome{kind: KindGood, placeErr: "Internal"})
	s := r.snapshot(start.Add(2 * time.Second))
	require.Equal(t, 5, s.Started)
	require.Equal(t, 4, s.Placed)
	require.Equal(t, 3, s.Done)
	require.Equal(t, 2, s.InFlight)
	require.Equal(t, 1, s.Errors)
	require.InDelta(t, 2.0, s.Rate, 1e-9, "4 placed in 2s")
	require.Equal(t, 100*ms, s.SagaP50)
	require.Equal(t, 300*ms, s.SagaP95)

	for range 3 {
		r.placedOne()
	}
	s = r.snapshot(start.Add(3 * time.Second))
	require.InDelta(t, 3.0, s.Rate, 1e-9, "3 placed in the last second")
}

func TestConfigDefaultsAndValidation(t *testing.T) {
	t.Parallel()
	mix, err := ParseMix(DefaultMix)
	require.NoError(t, err)
	_, err = Config{}.withDefaults()
	require.ErrorContains(t, err, "no connection to the order service")
	require.ErrorContains(t, err, "no shoppers")
	require.ErrorContains(t, err, "set a rate or a concurrency")
	require.ErrorContains(t, err, "set a count or a duration")

	c, err := Config{Order: fakeConn{}, Shoppers: []Shopper{{ID: "u", Token: "t"}}, Rate: 5, Count: 1, Mix: mix}.withDefaults()
	require.NoError(t, err)
	require.Equal(t, DefaultMaxInFlight, c.Concurrency, "a rate caps the orders in flight")
	require.Equal(t, time.Minute, c.FollowTimeout)
	require.Equal(t, "SKU-CABLE", c.HotSKU)
	require.Equal(t, "rate 5/s (at most 1000 in flight)", c.mode())

	_, err = Config{Order: fakeConn{}, Shoppers: []Shopper{{ID: "u"}}, Concurrency: 1, Count: 1, Mix: mix, RetryFraction: 2}.withDefaults()
	require.ErrorContains(t, err, "shopper 0: needs an id and a token")
	require.ErrorContains(t, err, "retry fraction 2")
}
