package app_test

import (
	"context"
	"crypto/sha256"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
	"github.com/goodgo/goodgo/services/order/internal/app"
	"github.com/goodgo/goodgo/services/order/internal/order"
	"github.com/goodgo/goodgo/services/order/internal/postgres"
)

// fakeCatalog stands in for the inventory service (a neighbour).
type fakeCatalog struct {
	products map[string]app.Product
	err      error
	calls    atomic.Int64
}

func (c *fakeCatalog) Products(_ context.Context, skus []string) (map[string]app.Product, error) {
	c.calls.Add(1)
	if c.err != nil {
		return nil, c.err
	}
	out := make(map[string]app.Product)
	for _, s := range skus {
		if p, ok := c.products[s]; ok {
			out[s] = p
		}
	}
	return out, nil
}

// The callers of the tests: placer places the orders (asPlacer, with
// their own token), saga is the orchestrator acting for them, operator a
// support engineer.
const placer = "user-1"

var (
	asPlacer = caller.Identity{User: placer}
	saga     = caller.Identity{Service: "orchestrator", User: placer, Delegated: true, Permissions: []string{"orders.place"}}
	operator = caller.Identity{User: "ops-1", Roles: []string{caller.RoleOperator}}
)

type testBundle struct {
	app     *app.App
	catalog *fakeCatalog
	pool    *pgxpool.Pool
	reg     *prometheus.Registry
}

func setup(t *testing.T) testBundle {
	t.Helper()
	_, pool := pgtest.NewDatabase(t, db.Order)
	reg := prometheus.NewRegistry()
	keys, err := keyring.New("k1", map[string][]byte{"k1": make([]byte, keyring.KeySize)})
	require.NoError(t, err)
	w, err := outbox.NewWriter(keys, reg)
	require.NoError(t, err)
	locks, err := optlock.NewMetrics(reg)
	require.NoError(t, err)
	cat := &fakeCatalog{products: map[string]app.Product{
		"SKU-1": {SKU: "SKU-1", Name: "Widget", UnitPrice: order.Money{Currency: "EUR", Minor: 1250}, Available: 5},
		"SKU-2": {SKU: "SKU-2", Name: "Gadget", UnitPrice: order.Money{Currency: "EUR", Minor: 99}, Available: 5},
		"USD-1": {SKU: "USD-1", Name: "Dollar thing", UnitPrice: order.Money{Currency: "USD", Minor: 100}},
	}}
	pii, err := keyring.New("p1", map[string][]byte{"p1": []byte("0123456789abcdef0123456789abcdef")})
	require.NoError(t, err)
	repo, err := postgres.NewRepository(pool, w, pii)
	require.NoError(t, err)
	return testBundle{app: app.New(repo, cat, locks), catalog: cat, pool: pool, reg: reg}
}

func (b testBundle) count(t *testing.T, table string) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n))
	return n
}

func (b testBundle) events(t *testing.T, orderID string) []string {
	return servicetest.OutboxEvents(t, b.pool, orderID)
}

func placeRequest() app.PlaceOrder {
	return app.PlaceOrder{
		Draft: order.Draft{
			CustomerID:      "0190a0c4-52f7-7b8e-9d1e-4c3b2a190a0c",
			Items:           []order.Item{{SKU: "SKU-1", Quantity: 2}, {SKU: "SKU-2", Quantity: 3}},
			ShippingAddress: order.Address{Name: "Ada", Line1: "1 Main St", City: "London", PostalCode: "N1", CountryCode: "gb"},
			PaymentMethod:   "tok_visa",
		},
		PlacedBy:       placer,
		IdempotencyKey: newKey(),
	}
}

func newKey() []byte {
	k := sha256.Sum256([]byte(uuid.NewString()))
	return k[:]
}

func requireDomainError(t *testing.T, err error, kind error, field string) {
	t.Helper()
	require.ErrorIs(t, err, kind)
	var de *order.Error
	require.ErrorAs(t, err, &de)
	require.Equal(t, field, de.Field)
}

func TestPlaceOrder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("prices from the catalog and stores a pending order with its event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o, err := b.app.PlaceOrder(ctx, placeRequest())
		require.NoError(t, err)
		require.Equal(t, order.StatusPending, o.Status)
		require.Equal(t, order.Money{Currency: "EUR", Minor: 2*1250 + 3*99}, o.Total)
		require.Equal(t, "Widget", o.Lines[0].Name)
		require.Equal(t, "GB", o.ShippingAddress.CountryCode, "stored normalized")
		require.Equal(t, "user-1", o.PlacedBy)
		require.Equal(t, int64(1), o.Version)

		got, err := b.app.GetOrder(ctx, asPlacer, o.ID)
		require.NoError(t, err)
		require.Equal(t, o, got)
		require.Equal(t, []string{"order.created.v1"}, b.events(t, o.ID))
	})

	t.Run("bad input is refused before anything is read or written", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tooMany := make([]order.Item, order.MaxItems+1)
		for i := range tooMany {
			tooMany[i] = order.Item{SKU: "SKU-" + strings.Repeat("X", i+1), Quantity: 1}
		}
		for _, tt := range []struct {
			field  string
			modify func(*app.PlaceOrder)
		}{
			{"items", func(r *app.PlaceOrder) { r.Draft.Items = nil }},
			{"items", func(r *app.PlaceOrder) { r.Draft.Items = tooMany }},
			{"items[1].quantity", func(r *app.PlaceOrder) { r.Draft.Items[1].Quantity = 0 }},
			{"items[0].quantity", func(r *app.PlaceOrder) { r.Draft.Items[0].Quantity = -1 }},
			{"items[1].sku", func(r *app.PlaceOrder) { r.Draft.Items[1].SKU = "SKU-1" }},
			{"customer_id", func(r *app.PlaceOrder) { r.Draft.CustomerID = "not-a-uuid" }},
			{"shipping_address", func(r *app.PlaceOrder) { r.Draft.ShippingAddress = order.Address{} }},
		} {
			req := placeRequest()
			tt.modify(&req)
			_, err := b.app.PlaceOrder(ctx, req)
			requireDomainError(t, err, order.ErrInvalid, tt.field)
		}
		require.Zero(t, b.catalog.calls.Load())
		require.Zero(t, b.count(t, "orders"))
		require.Zero(t, b.count(t, "outbox"))
	})

	// Lines the catalog cannot price together refuse the order: nothing is
	// written.
	for _, tt := range []struct {
		name, sku string
		kind      error
		field     string
	}{
		{"an unknown SKU is not found, naming its line", "NOPE", order.ErrNotFound, "items[1].sku"},
		{"items in two currencies are a failed precondition", "USD-1", order.ErrFailedPrecondition, "items"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			req := placeRequest()
			req.Draft.Items[1].SKU = tt.sku
			_, err := b.app.PlaceOrder(ctx, req)
			requireDomainError(t, err, tt.kind, tt.field)
			require.Zero(t, b.count(t, "orders"))
		})
	}

	t.Run("an unavailable catalog is reported as such", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.catalog.err = app.ErrCatalogUnavailable
		_, err := b.app.PlaceOrder(ctx, placeRequest())
		require.ErrorIs(t, err, app.ErrCatalogUnavailable)
		require.Zero(t, b.count(t, "orders"))
	})

	t.Run("a retry with the same key returns the first order without pricing again", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		req := placeRequest()
		first, err := b.app.PlaceOrder(ctx, req)
		require.NoError(t, err)
		// Even with the catalog gone, the retry gets its order back.
		b.catalog.err = app.ErrCatalogUnavailable
		again, err := b.app.PlaceOrder(ctx, req)
		require.NoError(t, err)
		require.Equal(t, first, again)
		require.Equal(t, int64(1), b.catalog.calls.Load())
		require.Equal(t, 1, b.count(t, "orders"))
		require.Equal(t, 1, b.count(t, "outbox"))
	})

	t.Run("the same key with a different request is refused", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		req := placeRequest()
		_, err := b.app.PlaceOrder(ctx, req)
		require.NoError(t, err)
		req.Draft.Items[0].Quantity = 7
		_, err = b.app.PlaceOrder(ctx, req)
		require.ErrorIs(t, err, app.ErrIdempotencyKeyReused)
		require.Equal(t, 1, b.count(t, "orders"))
	})

	t.Run("the same key with a different address is refused, even without Redis", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		req := placeRequest()
		first, err := b.app.PlaceOrder(ctx, req)
		require.NoError(t, err)
		req.Draft.ShippingAddress.City = "Paris"
		_, err = b.app.PlaceOrder(ctx, req)
		require.ErrorIs(t, err, app.ErrIdempotencyKeyReused)
		got, err := b.app.GetOrder(ctx, asPlacer, first.ID)
		require.NoError(t, err)
		require.Equal(t, "London", got.ShippingAddress.City)
		require.Equal(t, 1, b.count(t, "orders"))
	})

	t.Run("50 concurrent requests with one key create one order", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		req := placeRequest()
		const n = 50
		ids := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				o, err := b.app.PlaceOrder(ctx, req)
				ids[i], errs[i] = o.ID, err
			})
		}
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i])
			require.Equal(t, ids[0], ids[i])
		}
		require.Equal(t, 1, b.count(t, "orders"))
		require.Equal(t, 1, b.count(t, "outbox"))
	})
}

func TestGetOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.app.GetOrder(context.Background(), asPlacer, "nope")
	requireDomainError(t, err, order.ErrInvalid, "order_id")
	_, err = b.app.GetOrder(context.Background(), asPlacer, uuid.NewString())
	require.ErrorIs(t, err, order.ErrNotFound)
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	o, err := b.app.PlaceOrder(ctx, placeRequest())
	require.NoError(t, err)
	paris := order.Address{Name: "Ada", Line1: "2 Rue", City: "Paris", PostalCode: "75001", CountryCode: "FR"}

	t.Run("only a service acting for the placer confirms or cancels", func(t *testing.T) {
		forOther := saga
		forOther.User = "user-2"
		for _, who := range []caller.Identity{asPlacer, operator, {Service: "orchestrator"}, forOther, {}} {
			_, err := b.app.ConfirmOrder(ctx, who, o.ID)
			requireDomainError(t, err, order.ErrPermissionDenied, "")
			require.ErrorContains(t, err, "the order may be confirmed or cancelled only for the customer who placed it")
			_, err = b.app.CancelOrder(ctx, who, o.ID, "no")
			requireDomainError(t, err, order.ErrPermissionDenied, "")
		}
		got, err := b.app.GetOrder(ctx, asPlacer, o.ID)
		require.NoError(t, err)
		require.Equal(t, order.StatusPending, got.Status)
		require.Equal(t, []string{"order.created.v1"}, b.events(t, o.ID))
	})

	t.Run("another caller's order does not exist for them", func(t *testing.T) {
		for _, who := range []caller.Identity{{User: "user-2"}, {}, saga, {Service: "payment"}} {
			_, err := b.app.GetOrder(ctx, who, o.ID)
			require.ErrorIs(t, err, order.ErrNotFound)
			require.EqualError(t, err, "order_id: no such order", "the same answer as for an unknown order")
			_, err = b.app.UpdateShippingAddress(ctx, app.UpdateShippingAddress{Caller: who, OrderID: o.ID, Address: paris, Version: 1})
			require.ErrorIs(t, err, order.ErrNotFound)
			var de *order.Error
			require.ErrorAs(t, err, &de)
			require.Equal(t, "order_id: no such order", de.Error())
			_, err = b.app.UpdateShippingAddress(ctx, app.UpdateShippingAddress{Caller: who, OrderID: o.ID, Address: paris, Version: 9})
			require.ErrorIs(t, err, order.ErrNotFound, "not even a version conflict is revealed")
		}
		require.Equal(t, []string{"order.created.v1"}, b.events(t, o.ID))
	})

	t.Run("operators read and readdress anyone's order", func(t *testing.T) {
		got, err := b.app.GetOrder(ctx, operator, o.ID)
		require.NoError(t, err)
		require.Equal(t, o.ID, got.ID)
		moved, err := b.app.UpdateShippingAddress(ctx, app.UpdateShippingAddress{Caller: operator, OrderID: o.ID, Address: paris, Version: got.Version})
		require.NoError(t, err)
		require.Equal(t, paris, moved.ShippingAddress)
	})

	t.Run("a stale version is a conflict carrying both versions", func(t *testing.T) {
		_, err := b.app.UpdateShippingAddress(ctx, app.UpdateShippingAddress{Caller: asPlacer, OrderID: o.ID, Address: paris, Version: 1})
		var ce *optlock.ConflictError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, int64(1), ce.Presented)
		require.Equal(t, int64(2), ce.Current)
	})
}

func TestConfirmAndCancel(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	place := func(t *testing.T, b testBundle) order.Order {
		t.Helper()
		o, err := b.app.PlaceOrder(ctx, placeRequest())
		require.NoError(t, err)
		return o
	}

	t.Run("confirm, then confirm again as a no-op, then cancel is refused", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := place(t, b)
		c, err := b.app.ConfirmOrder(ctx, saga, o.ID)
		require.NoError(t, err)
		require.Equal(t, order.StatusConfirmed, c.Status)
		require.Equal(t, int64(2), c.Version)

		again, err := b.app.ConfirmOrder(ctx, saga, strings.ToUpper(o.ID))
		require.NoError(t, err)
		require.Equal(t, c, again)
		require.Equal(t, 1.0, metric(t, b.reg, "optimistic_lock_attempts_total"), "a no-op writes nothing: not an attempt")

		_, err = b.app.CancelOrder(ctx, saga, o.ID, "too late")
		requireDomainError(t, err, order.ErrFailedPrecondition, "order_id")
		require.Equal(t, []string{"order.created.v1", "order.confirmed.v1"}, b.events(t, o.ID))
	})

	t.Run("cancel, then cancel again as a no-op, then confirm is refused", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := place(t, b)
		c, err := b.app.CancelOrder(ctx, saga, o.ID, "payment declined")
		require.NoError(t, err)
		require.Equal(t, order.StatusCancelled, c.Status)
		require.Equal(t, "payment declined", c.CancelReason)

		again, err := b.app.CancelOrder(ctx, saga, o.ID, "other reason")
		require.NoError(t, err)
		require.Equal(t, c, again, "the first reason stays")

		_, err = b.app.ConfirmOrder(ctx, saga, o.ID)
		requireDomainError(t, err, order.ErrFailedPrecondition, "order_id")
		require.Equal(t, []string{"order.created.v1", "order.cancelled.v1"}, b.events(t, o.ID))
	})

	t.Run("bad ids and reasons are invalid; unknown orders not found", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.app.ConfirmOrder(ctx, saga, "123")
		requireDomainError(t, err, order.ErrInvalid, "order_id")
		_, err = b.app.CancelOrder(ctx, saga, uuid.NewString(), strings.Repeat("r", order.MaxCancelReason+1))
		requireDomainError(t, err, order.ErrInvalid, "reason")
		_, err = b.app.CancelOrder(ctx, saga, uuid.NewString(), "x")
		require.ErrorIs(t, err, order.ErrNotFound)
	})

	t.Run("racing confirmations and cancellations: one wins, conflicts are retried", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := place(t, b)
		const n = 16
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				if i%2 == 0 {
					_, errs[i] = b.app.ConfirmOrder(ctx, saga, o.ID)
				} else {
					_, errs[i] = b.app.CancelOrder(ctx, saga, o.ID, "race")
				}
			})
		}
		wg.Wait()
		final, err := b.app.GetOrder(ctx, asPlacer, o.ID)
		require.NoError(t, err)
		require.Equal(t, int64(2), final.Version, "exactly one transition")
		for i, err := range errs {
			wonConfirm := final.Status == order.StatusConfirmed
			if (i%2 == 0) == wonConfirm {
				require.NoError(t, err, "the winning transition and its repeats succeed")
			} else {
				requireDomainError(t, err, order.ErrFailedPrecondition, "order_id")
			}
		}
		require.Len(t, b.events(t, o.ID), 2)
		require.Equal(t, 1.0, metric(t, b.reg, "optimistic_lock_attempts_total")-metric(t, b.reg, "optimistic_lock_conflicts_total"),
			"one conditional update won; the others lost it and were retried, then found nothing to write")
		require.Equal(t, metric(t, b.reg, "optimistic_lock_conflicts_total"), metric(t, b.reg, "optimistic_lock_retries_total"))
	})
}

func TestUpdateShippingAddress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	paris := order.Address{Name: "Ada", Line1: "2 Rue", City: "Paris", PostalCode: "75001", CountryCode: "FR"}

	t.Run("changes the address of a pending order at the version read", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o, err := b.app.PlaceOrder(ctx, placeRequest())
		require.NoError(t, err)
		got, err := b.app.UpdateShippingAddress(ctx, app.UpdateShippingAddress{Caller: asPlacer, OrderID: o.ID, Address: paris, Version: 1})
		require.NoError(t, err)
		require.Equal(t, paris, got.ShippingAddress)
		require.Equal(t, int64(2), got.Version)
		require.Equal(t, []string{"order.created.v1", "order.shipping_address_changed.v1"}, b.events(t, o.ID))

		t.Log("the same request again is stale")
		_, err = b.app.UpdateShippingAddress(ctx, app.UpdateShippingAddress{Caller: asPlacer, OrderID: o.ID, Address: paris, Version: 1})
		require.ErrorIs(t, err, optlock.ErrConflict)
		require.Len(t, b.events(t, o.ID), 2)
		require.Equal(t, 1.0, metric(t, b.reg, "optimistic_lock_conflicts_total"))
	})

	t.Run("a confirmed order cannot be readdressed", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o, err := b.app.PlaceOrder(ctx, placeRequest())
		require.NoError(t, err)
		c, err := b.app.ConfirmOrder(ctx, saga, o.ID)
		require.NoError(t, err)
		_, err = b.app.UpdateShippingAddress(ctx, app.UpdateShippingAddress{Caller: asPlacer, OrderID: o.ID, Address: paris, Version: c.Version})
		requireDomainError(t, err, order.ErrFailedPrecondition, "order_id")
	})

	t.Run("a bad address is invalid and an unknown order not found", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		bad := paris
		bad.PostalCode = ""
		_, err := b.app.UpdateShippingAddress(ctx, app.UpdateShippingAddress{Caller: asPlacer, OrderID: uuid.NewString(), Address: bad, Version: 1})
		requireDomainError(t, err, order.ErrInvalid, "shipping_address.postal_code")
		_, err = b.app.UpdateShippingAddress(ctx, app.UpdateShippingAddress{Caller: asPlacer, OrderID: uuid.NewString(), Address: paris, Version: 1})
		require.ErrorIs(t, err, order.ErrNotFound)
	})
}

// metric sums the values of every series of the counter family name.
func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
