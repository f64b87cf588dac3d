package e2e

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

// sagaTimeout bounds waiting for one saga on a loaded machine with -race
// binaries; a healthy one takes well under a second.
const sagaTimeout = 60 * time.Second

// TestSagaOutcomes drives the order saga through each of its ends in one
// environment, checking the invariants after every scenario.
func TestSagaOutcomes(t *testing.T) {
	e := NewEnv(t, envOptions{race: true})

	t.Run("every binary runs as its own database role", e.CheckRoles)

	t.Run("happy path: CONFIRMED, payment captured, stock reserved", func(t *testing.T) {
		kbBefore, _ := e.Stock(t, "SKU-KEYBOARD")
		msBefore, _ := e.Stock(t, "SKU-MOUSE")
		placed := e.MustPlaceOrder(t, items("SKU-KEYBOARD", 2, "SKU-MOUSE", 1), cardOK)
		require.Equal(t, 2*catalog["SKU-KEYBOARD"]+catalog["SKU-MOUSE"], placed.GetTotal().GetAmountMinor())

		o := e.WaitOrder(t, placed.GetOrderId(), sagaTimeout)
		require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, o.GetStatus(), "cancel reason %q", o.GetCancelReason())
		s := e.CheckInvariants(t)
		p := s.Payments[o.GetOrderId()]
		require.NotNil(t, p)
		require.Equal(t, "CAPTURED", p.Status)
		require.Equal(t, placed.GetTotal().GetAmountMinor(), p.Amount)
		r := s.Reservations[o.GetOrderId()]
		require.NotNil(t, r)
		require.Equal(t, "RESERVED", r.Status)
		require.Equal(t, map[string]int64{"SKU-KEYBOARD": 2, "SKU-MOUSE": 1}, r.Lines)
		require.Equal(t, kbBefore-2, s.Products["SKU-KEYBOARD"].Available)
		require.Equal(t, msBefore-1, s.Products["SKU-MOUSE"].Available)
		require.Equal(t, "COMPLETED", s.Sagas[o.GetOrderId()][0].State)
	})

	t.Run("declined payment: CANCELLED, nothing reserved", func(t *testing.T) {
		before, _ := e.Stock(t, "SKU-WEBCAM")
		placed := e.MustPlaceOrder(t, items("SKU-WEBCAM", 1), cardDecline)
		o := e.WaitOrder(t, placed.GetOrderId(), sagaTimeout)
		require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_CANCELLED, o.GetStatus())
		require.Contains(t, o.GetCancelReason(), "declined")
		s := e.CheckInvariants(t)
		p := s.Payments[o.GetOrderId()]
		require.NotNil(t, p)
		require.Equal(t, "DECLINED", p.Status)
		require.Equal(t, "card_declined", p.DeclineReason)
		require.Nil(t, s.Reservations[o.GetOrderId()], "a declined order must not reach inventory")
		require.Equal(t, before, s.Products["SKU-WEBCAM"].Available)
		require.Equal(t, "COMPENSATED", s.Sagas[o.GetOrderId()][0].State)
	})

	t.Run("amount over the payment limit: CANCELLED, nothing reserved", func(t *testing.T) {
		// 8 laptops = 1,039,200 cents, over PAYMENT_DECLINE_ABOVE_MINOR.
		placed := e.MustPlaceOrder(t, items("SKU-LAPTOP", 8), cardOK)
		o := e.WaitOrder(t, placed.GetOrderId(), sagaTimeout)
		require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_CANCELLED, o.GetStatus())
		s := e.CheckInvariants(t)
		require.Equal(t, "amount_limit", s.Payments[o.GetOrderId()].DeclineReason)
		require.Nil(t, s.Reservations[o.GetOrderId()])
	})

	t.Run("insufficient stock: CANCELLED, payment refunded", func(t *testing.T) {
		available, _ := e.Stock(t, "SKU-LIMITED")
		placed := e.MustPlaceOrder(t, items("SKU-LIMITED", int(available)+1), cardOK)
		o := e.WaitOrder(t, placed.GetOrderId(), sagaTimeout)
		require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_CANCELLED, o.GetStatus())
		require.Contains(t, o.GetCancelReason(), "insufficient stock")
		s := e.CheckInvariants(t)
		p := s.Payments[o.GetOrderId()]
		require.NotNil(t, p)
		require.Equal(t, "REFUNDED", p.Status)
		require.Equal(t, p.Amount, p.Refunded)
		r := s.Reservations[o.GetOrderId()]
		require.NotNil(t, r)
		require.Equal(t, "REJECTED", r.Status)
		require.Equal(t, "insufficient_stock", r.RejectReason)
		require.Equal(t, available, s.Products["SKU-LIMITED"].Available)
		require.Equal(t, "COMPENSATED", s.Sagas[o.GetOrderId()][0].State)
	})

	t.Run("contended last units: exactly the stock is sold, the rest refunded", func(t *testing.T) {
		const stock, buyers = 3, 8
		e.SetStock(t, "SKU-LIMITED", stock)
		var (
			mu  sync.Mutex
			ids []string
			wg  sync.WaitGroup
		)
		for range buyers {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				o, err := e.PlaceOrder(ctx, items("SKU-LIMITED", 1), cardOK)
				if !assertNoError(t, err) {
					return
				}
				mu.Lock()
				ids = append(ids, o.GetOrderId())
				mu.Unlock()
			})
		}
		wg.Wait()
		require.Len(t, ids, buyers)
		statuses := e.WaitOrders(t, ids, sagaTimeout)
		got := map[string]int{}
		for _, st := range statuses {
			got[st]++
		}
		require.Equal(t, map[string]int{"CONFIRMED": stock, "CANCELLED": buyers - stock}, got)
		s := e.CheckInvariants(t)
		require.Zero(t, s.Products["SKU-LIMITED"].Available)
		for _, id := range ids {
			if statuses[id] == "CANCELLED" {
				require.Equal(t, "REFUNDED", s.Payments[id].Status)
				require.Equal(t, "REJECTED", s.Reservations[id].Status)
			}
		}
	})

	t.Run("the invariant checks catch violations", func(t *testing.T) {
		invariantChecksCatchViolations(t, e)
	})
}

// assertNoError reports err on t without stopping a goroutine that is not
// the test's (require may only stop the test goroutine).
func assertNoError(t testing.TB, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

// invariantChecksCatchViolations proves that CheckInvariants is not
// vacuous: after a confirmed and a refunded order, each kind of corruption
// written straight into a service's database is reported (the business
// ones by the consistency auditor, through the APIs), and the checks pass
// again once it is undone.
func invariantChecksCatchViolations(t *testing.T, e *Env) {
	e.SetStock(t, "SKU-LIMITED", 1)
	ok := e.MustPlaceOrder(t, items("SKU-CABLE", 3), cardOK).GetOrderId()
	short := e.MustPlaceOrder(t, items("SKU-LIMITED", 2), cardOK).GetOrderId()
	e.WaitOrders(t, []string{ok, short}, sagaTimeout)
	e.CheckInvariants(t)

	ctx := context.Background()
	exec := func(svc, sql string, args ...any) {
		t.Helper()
		tag, err := e.DB[svc].Exec(ctx, sql, args...)
		require.NoError(t, err)
		require.Positive(t, tag.RowsAffected(), sql)
	}
	for _, c := range []struct {
		name, want string
		svc        string
		do, undo   string
		args       []any
	}{
		{"confirmed order's payment refunded", "confirmed_not_charged [order=", svcPayment,
			`UPDATE payments SET status = 'REFUNDED', refunded_minor = amount_minor WHERE order_id = $1`,
			`UPDATE payments SET status = 'CAPTURED', refunded_minor = 0 WHERE order_id = $1`, []any{ok}},
		{"refund undone", "cancelled_charged [order=", svcPayment,
			`UPDATE payments SET status = 'CAPTURED', refunded_minor = 0 WHERE order_id = $1`,
			`UPDATE payments SET status = 'REFUNDED', refunded_minor = amount_minor WHERE order_id = $1`, []any{short}},
		{"stock appears from nowhere", "SKU-CABLE: initial", svcInventory,
			`UPDATE products SET available = available + 1 WHERE sku = 'SKU-CABLE' AND $1::text <> ''`,
			`UPDATE products SET available = available - 1 WHERE sku = 'SKU-CABLE' AND $1::text <> ''`, []any{ok}},
		{"reserved stock no order explains", "stock_unbalanced [sku=SKU-CABLE]", svcInventory,
			`UPDATE products SET reserved = reserved + 1, available = available - 1 WHERE sku = 'SKU-CABLE' AND $1::text <> ''`,
			`UPDATE products SET reserved = reserved - 1, available = available + 1 WHERE sku = 'SKU-CABLE' AND $1::text <> ''`, []any{ok}},
		{"confirmed order's reservation released", "confirmed_not_reserved [order=", svcInventory,
			`UPDATE reservations SET status = 'RELEASED' WHERE order_id = $1`,
			`UPDATE reservations SET status = 'RESERVED' WHERE order_id = $1`, []any{ok}},
		{"saga left parked", "saga_parked [order=", svcOrchestrator,
			`UPDATE sagas SET state = 'PARKED' WHERE correlation_id = $1`,
			`UPDATE sagas SET state = 'COMPLETED' WHERE correlation_id = $1`, []any{ok}},
		{"order left pending", "order_not_terminal [order=", svcOrder,
			`UPDATE orders SET status = 'PENDING' WHERE id = $1`,
			`UPDATE orders SET status = 'CONFIRMED' WHERE id = $1`, []any{ok}},
		{"event marked published that Kafka never got", "marked published but not in Kafka", svcOrder,
			`INSERT INTO outbox (event_id, lane, topic, aggregate_type, aggregate_id, aggregate_version, event_type,
			                     content_type, payload, published_at)
			 VALUES ('00000000-0000-4000-8000-000000000001', 0, 'goodgo.order.events', 'order', $1, 99,
			         'order.shipping_address_changed.v1', 'application/x-protobuf', '', now())`,
			`DELETE FROM outbox WHERE event_id = '00000000-0000-4000-8000-000000000001' AND aggregate_id = $1`, []any{ok}},
	} {
		t.Run(c.name, func(t *testing.T) {
			exec(c.svc, c.do, c.args...)
			got := failures(t, func(tb testing.TB) { e.CheckInvariants(tb) })
			exec(c.svc, c.undo, c.args...)
			require.Contains(t, got, c.want)
			e.CheckInvariants(t)
		})
	}
}
