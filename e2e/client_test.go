package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/idempotency"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

// shopper is a customer of the environment: a user id (the subject of
// its token, and its customer id) and a token. Orders are placed for the
// environment's shoppers in turn, so that many customers place them, as in
// life, each well under the per-user rate limit.
type shopper struct{ id, token string }

// shoppers is how many customers an environment has.
const shoppers = 32

// Payment methods of the payment service's test levers.
const (
	cardOK      = "tok_visa"
	cardDecline = "tok_decline" // always DECLINED, card_declined
)

// The seeded catalog (db/inventory/migrations/000003_seed_catalog.up.sql):
// prices in USD cents; SKU-LIMITED starts with 5 units.
var catalog = map[string]int64{
	"SKU-KEYBOARD": 8900, "SKU-MOUSE": 2900, "SKU-MONITOR": 31900, "SKU-CABLE": 900,
	"SKU-HEADSET": 5900, "SKU-LAPTOP": 129900, "SKU-DOCK": 17900, "SKU-WEBCAM": 6900,
	"SKU-LIMITED": 1500,
}

// plentySKUs are the seeded SKUs with hundreds of units or more.
var plentySKUs = []string{"SKU-KEYBOARD", "SKU-MOUSE", "SKU-MONITOR", "SKU-CABLE", "SKU-HEADSET", "SKU-LAPTOP", "SKU-DOCK", "SKU-WEBCAM"}

// as adds the bearer token tok and a fresh idempotency key to ctx.
func as(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(authtest.AsUser(ctx, tok), idempotency.MetadataKey, uuid.NewString())
}

// shopper returns the next of the environment's shoppers.
func (e *Env) shopper() shopper {
	return e.shoppers[int(e.nextShopper.Add(1))%len(e.shoppers)]
}

// items builds order lines from sku, quantity pairs.
func items(pairs ...any) []*orderv1.OrderItemInput {
	var out []*orderv1.OrderItemInput
	for i := 0; i+1 < len(pairs); i += 2 {
		out = append(out, &orderv1.OrderItemInput{Sku: pairs[i].(string), Quantity: int32(pairs[i+1].(int))})
	}
	return out
}

// PlaceOrder places an order for the next shopper, as a client would: the
// shopper's token and a fresh idempotency key in the metadata.
func (e *Env) PlaceOrder(ctx context.Context, lines []*orderv1.OrderItemInput, paymentMethod string) (*orderv1.Order, error) {
	return e.placeOrder(ctx, e.Orders, lines, paymentMethod)
}

func (e *Env) placeOrder(ctx context.Context, c orderv1.OrderServiceClient, lines []*orderv1.OrderItemInput, paymentMethod string) (*orderv1.Order, error) {
	who := e.shopper()
	req := &orderv1.PlaceOrderRequest{
		CustomerId: who.id,
		Items:      lines,
		ShippingAddress: &orderv1.Address{
			Name: "Ada Lovelace", Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH", CountryCode: "GB",
		},
		PaymentMethod: paymentMethod,
	}
	callCtx := as(ctx, who.token)
	var resp *orderv1.PlaceOrderResponse
	err := withinRateLimit(ctx, func() (err error) {
		resp, err = c.PlaceOrder(callCtx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.GetOrder(), nil
}

// withinRateLimit calls call again, after the wait its ResourceExhausted
// error asks for, until it is not rate limited or ctx ends: what a
// well-behaved client does (a retry of a guarded call keeps its
// idempotency key).
func withinRateLimit(ctx context.Context, call func() error) error {
	for {
		err := call()
		wait, limited := grpcclient.RetryDelay(err)
		if !limited {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
	}
}

// MustPlaceOrder is PlaceOrder that fails the test on error.
func (e *Env) MustPlaceOrder(t testing.TB, lines []*orderv1.OrderItemInput, paymentMethod string) *orderv1.Order {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o, err := e.PlaceOrder(ctx, lines, paymentMethod)
	require.NoError(t, err)
	require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_PENDING, o.GetStatus())
	return o
}

// WaitOrder polls GetOrder until the order is CONFIRMED or CANCELLED and
// returns it; it fails the test after timeout.
func (e *Env) WaitOrder(t testing.TB, id string, timeout time.Duration) *orderv1.Order {
	t.Helper()
	var last *orderv1.Order
	ok := poll(timeout, 50*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Operators see every order.
		r, err := e.Orders.GetOrder(authtest.AsUser(ctx, e.operator), &orderv1.GetOrderRequest{OrderId: id})
		if err != nil {
			return false
		}
		last = r.GetOrder()
		return terminal(last.GetStatus())
	})
	require.True(t, ok, "order %s not CONFIRMED or CANCELLED within %s: last %v", id, timeout, last.GetStatus())
	return last
}

func terminal(s orderv1.OrderStatus) bool {
	return s == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED || s == orderv1.OrderStatus_ORDER_STATUS_CANCELLED
}

// WaitOrders waits, reading the order database in bulk (a GetOrder per
// order and poll would load the system under test), until every order of
// ids is CONFIRMED or CANCELLED; it returns their statuses and fails the
// test after timeout, naming some orders still pending.
func (e *Env) WaitOrders(t testing.TB, ids []string, timeout time.Duration) map[string]string {
	t.Helper()
	var got map[string]string
	ok := poll(timeout, 100*time.Millisecond, func() bool {
		got = e.orderStatuses(t, ids)
		for _, id := range ids {
			if s := got[id]; s != "CONFIRMED" && s != "CANCELLED" {
				return false
			}
		}
		return true
	})
	if !ok {
		var pending []string
		for _, id := range ids {
			if s := got[id]; s != "CONFIRMED" && s != "CANCELLED" {
				pending = append(pending, id+"="+s)
			}
		}
		sort.Strings(pending)
		require.Failf(t, "orders not terminal", "%d of %d orders not CONFIRMED or CANCELLED within %s: %.1000v\n%s",
			len(pending), len(ids), timeout, pending, e.sagaSummary(t))
	}
	return got
}

func (e *Env) orderStatuses(t testing.TB, ids []string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := e.DB[svcOrder].Query(ctx, `SELECT id::text, status FROM orders WHERE id = ANY($1::uuid[])`, ids)
	require.NoError(t, err)
	out := make(map[string]string, len(ids))
	for rows.Next() {
		var id, s string
		require.NoError(t, rows.Scan(&id, &s))
		out[id] = s
	}
	require.NoError(t, rows.Err())
	return out
}

// sagaSummary counts the sagas by state and lists the last errors of
// unfinished steps: the first thing to read when orders hang.
func (e *Env) sagaSummary(t testing.TB) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b []byte
	rows, err := e.DB[svcOrchestrator].Query(ctx, `SELECT state, count(*) FROM sagas GROUP BY state ORDER BY state`)
	if err != nil {
		return err.Error()
	}
	for rows.Next() {
		var s string
		var n int
		_ = rows.Scan(&s, &n)
		b = fmt.Appendf(b, "sagas %s: %d\n", s, n)
	}
	rows.Close()
	rows, err = e.DB[svcOrchestrator].Query(ctx, `SELECT name, phase, status, attempts, last_error FROM saga_steps
		WHERE status <> 'SUCCEEDED' ORDER BY updated_at DESC LIMIT 10`)
	if err != nil {
		return string(b) + err.Error()
	}
	for rows.Next() {
		var name, phase, st, le string
		var n int
		_ = rows.Scan(&name, &phase, &st, &n, &le)
		b = fmt.Appendf(b, "step %s %s %s attempts=%d error=%q\n", name, phase, st, n, le)
	}
	rows.Close()
	return string(b)
}

// SetStock sets the available units of sku through the admin RPC (read,
// then adjust with the read's version token; a token made stale by a
// concurrent reservation is read again) and records the new baseline of
// the stock invariant.
func (e *Env) SetStock(t testing.TB, sku string, available int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for attempt := 1; ; attempt++ {
		var g *inventoryv1.GetStockResponse
		err := withinRateLimit(ctx, func() (err error) {
			g, err = e.Inventory.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: sku})
			return err
		})
		require.NoError(t, err)
		// e.Inventory calls as an operator; this call carries an admin's
		// token, whose version-checked updates are limited hardest.
		adminCtx := as(ctx, e.admin)
		var r *inventoryv1.AdjustStockResponse
		err = withinRateLimit(ctx, func() (err error) {
			r, err = adminInventory(e).AdjustStock(adminCtx, &inventoryv1.AdjustStockRequest{
				Sku: sku, Available: available, VersionToken: g.GetProduct().GetVersionToken(), Reason: "e2e scenario stock",
			})
			return err
		})
		if status.Code(err) == codes.Aborted && attempt < 10 {
			continue
		}
		require.NoError(t, err)
		p := r.GetProduct()
		require.Equal(t, available, p.GetAvailable())
		e.baselineMu.Lock()
		e.baseline[sku] = p.GetAvailable() + p.GetReserved()
		e.baselineMu.Unlock()
		return
	}
}

// adminInventory is an inventory client without a token of its own, for
// calls that carry an admin's.
func adminInventory(e *Env) inventoryv1.InventoryServiceClient {
	e.adminInvOnce.Do(func() { e.adminInv = inventoryv1.NewInventoryServiceClient(e.conn(svcInventory)) })
	return e.adminInv
}

// readStock reads available + reserved of every SKU from the inventory
// database.
func (e *Env) readStock(ctx context.Context) map[string]int64 {
	e.tb.Helper()
	rows, err := e.DB[svcInventory].Query(ctx, `SELECT sku, available + reserved FROM products`)
	require.NoError(e.tb, err)
	out := map[string]int64{}
	for rows.Next() {
		var sku string
		var n int64
		require.NoError(e.tb, rows.Scan(&sku, &n))
		out[sku] = n
	}
	require.NoError(e.tb, rows.Err())
	return out
}

// Stock is a SKU's available and reserved units, from the inventory
// database.
func (e *Env) Stock(t testing.TB, sku string) (available, reserved int64) {
	t.Helper()
	err := e.DB[svcInventory].QueryRow(context.Background(),
		`SELECT available, reserved FROM products WHERE sku = $1`, sku).Scan(&available, &reserved)
	require.NoError(t, err)
	return available, reserved
}
