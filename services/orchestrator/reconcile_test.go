package main

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/mtls"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

// ListStalePendingOrders lists n.pending, less the orders confirmed or
// cancelled since, on one page; it records the call with the age asked for
// as its reason.
func (n *neighbours) ListStalePendingOrders(ctx context.Context, req *orderv1.ListStalePendingOrdersRequest) (*orderv1.ListStalePendingOrdersResponse, error) {
	peer, _ := mtls.PeerFrom(ctx)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.calls = append(n.calls, call{Method: "ListStalePendingOrders", Reason: req.GetOlderThan().AsDuration().String(), Caller: peer.Service})
	resp := &orderv1.ListStalePendingOrdersResponse{}
	for _, o := range n.pending {
		if !slices.ContainsFunc(n.calls, func(c call) bool {
			return c.OrderID == o.GetOrderId() && (c.Method == "ConfirmOrder" || c.Method == "CancelOrder")
		}) {
			resp.Orders = append(resp.Orders, o)
		}
	}
	return resp, nil
}

// addPending makes the fake order service list o as a stale PENDING order.
func (n *neighbours) addPending(o *orderv1.OrderCreated) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pending = append(n.pending, &orderv1.PendingOrder{
		OrderId: o.GetOrderId(), CustomerId: o.GetCustomerId(), Items: o.GetItems(), Total: o.GetTotal(),
		PaymentMethod: o.GetPaymentMethod(), PlacedBy: o.GetPlacedBy(),
	})
}

// listings returns the ListStalePendingOrders calls so far.
func (n *neighbours) listings() []call {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []call
	for _, c := range n.calls {
		if c.Method == "ListStalePendingOrders" {
			out = append(out, c)
		}
	}
	return out
}

// sagasOf returns every saga of an order.
func (b *bundle) sagasOf(t *testing.T, orderID string) []*orchestratorv1.Saga {
	t.Helper()
	resp, err := b.sagas.ListSagas(context.Background(), &orchestratorv1.ListSagasRequest{CorrelationId: orderID})
	require.NoError(t, err)
	return resp.GetSagas()
}

var reconcileFast = map[string]string{"RECONCILE_INTERVAL": "100ms", "RECONCILE_AFTER": "2s"}

// An order whose order.created.v1 never started a saga (parked, lost) used
// to stay PENDING for ever (issue 10). The reconciler finds it among the
// order service's stale PENDING orders, sees it has no saga, and starts
// one from the order's data: the order ends CONFIRMED. Orders that have a
// saga are left alone.
func TestReconcilerStartsTheMissingSagaOfAStalePendingOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, reconcileFast)

	// An order with a saga of its own, held RUNNING, and listed as pending.
	b.n.mu.Lock()
	b.n.blockOn = "ReserveStock"
	b.n.mu.Unlock()
	busy := order("tok_visa", "SKU-1")
	b.publish(t, uuid.New(), busy)
	running := b.sagaOf(t, busy.GetOrderId(), orchestratorv1.SagaState_SAGA_STATE_RUNNING)
	b.n.addPending(busy)

	// An order whose event never arrived.
	lost := order("tok_visa", "SKU-1", "SKU-2")
	lost.PlacedBy, lost.CustomerId = "bob", "c-2"
	b.n.addPending(lost)

	// Its saga runs up to the blocked reservation, then completes.
	require.Eventually(t, func() bool { return len(b.n.of(lost.GetOrderId())) == 2 }, 20*time.Second, 10*time.Millisecond,
		"the reconciler started the lost order's saga")
	b.n.mu.Lock()
	b.n.blockOn = ""
	close(b.n.release)
	b.n.mu.Unlock()
	s := b.sagaOf(t, lost.GetOrderId(), orchestratorv1.SagaState_SAGA_STATE_COMPLETED)
	require.Equal(t, []string{"ProcessPayment", "ReserveStock", "ConfirmOrder"}, b.n.methodsOf(lost.GetOrderId()))
	require.Equal(t, "bob", s.GetStartedBy(), "acting for the order's placer")
	for _, c := range b.n.of(lost.GetOrderId()) {
		require.Equal(t, "bob", c.User)
		require.Equal(t, "orchestrator", c.Caller)
	}
	b.sagaOf(t, busy.GetOrderId(), orchestratorv1.SagaState_SAGA_STATE_COMPLETED)

	// Passes go on: neither order gets a second saga, and the busy one's
	// steps ran once.
	seen := len(b.n.listings())
	require.Eventually(t, func() bool { return len(b.n.listings()) >= seen+3 }, 10*time.Second, 10*time.Millisecond)
	for _, id := range []string{busy.GetOrderId(), lost.GetOrderId()} {
		require.Len(t, b.sagasOf(t, id), 1, "one saga per order")
	}
	require.Equal(t, running.GetSagaId(), b.sagasOf(t, busy.GetOrderId())[0].GetSagaId())
	require.Equal(t, []string{"ProcessPayment", "ReserveStock", "ConfirmOrder"}, b.n.methodsOf(busy.GetOrderId()))
	for _, c := range b.n.listings() {
		require.Equal(t, "2s", c.Reason, "RECONCILE_AFTER is the age asked for")
		require.Equal(t, "orchestrator", c.Caller)
	}
	line := b.logs.Find("stale PENDING order had no saga; saga started")
	require.NotNil(t, line)
	require.Equal(t, lost.GetOrderId(), line["order_id"])
}

// An order no saga can run (here it has no lines) is cancelled with a
// reason, acting for its placer, instead of waiting for ever.
func TestReconcilerCancelsAStaleOrderNoSagaCanRun(t *testing.T) {
	t.Parallel()
	b := setup(t, reconcileFast)
	broken := order("tok_visa")
	broken.Total = &commonv1.Money{CurrencyCode: "USD", AmountMinor: 0}
	b.n.addPending(broken)

	require.Eventually(t, func() bool { return len(b.n.of(broken.GetOrderId())) == 1 }, 20*time.Second, 10*time.Millisecond)
	c := b.n.of(broken.GetOrderId())[0]
	require.Equal(t, "CancelOrder", c.Method)
	require.Equal(t, "the order could not be processed", c.Reason)
	require.Equal(t, "reconcile:"+broken.GetOrderId()+":cancel", c.Key)
	require.Equal(t, "alice", c.User, "acting for the order's placer")
	require.Empty(t, b.sagasOf(t, broken.GetOrderId()))
}

func TestReconcilerConfig(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"GOODGO_MODE": "development"}
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	cfg, err := loadConfig(lookup)
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, cfg.Reconcile.Interval)
	require.Equal(t, time.Minute, cfg.Reconcile.After, "the saga deadline plus 30s")
	vars["SAGA_DEADLINE"] = "2m"
	cfg, err = loadConfig(lookup)
	require.NoError(t, err)
	require.Equal(t, 150*time.Second, cfg.Reconcile.After)
	vars["RECONCILE_INTERVAL"], vars["RECONCILE_AFTER"] = "0", "5m"
	cfg, err = loadConfig(lookup)
	require.NoError(t, err)
	require.Zero(t, cfg.Reconcile.Interval, "0 disables the reconciler")
	require.Equal(t, 5*time.Minute, cfg.Reconcile.After)
	vars["RECONCILE_INTERVAL"], vars["RECONCILE_AFTER"] = "-1s", "500ms"
	_, err = loadConfig(lookup)
	require.ErrorContains(t, err, "RECONCILE_INTERVAL: must not be negative")
	require.ErrorContains(t, err, "RECONCILE_AFTER: must be at least 1s")
}
