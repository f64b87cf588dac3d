package peers_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	"github.com/goodgo/goodgo/services/order/internal/app"
	"github.com/goodgo/goodgo/services/order/internal/inventorytest"
	"github.com/goodgo/goodgo/services/order/internal/order"
	"github.com/goodgo/goodgo/services/order/internal/peers"
)

func setup(t *testing.T, timeout time.Duration) (*peers.Catalog, *inventorytest.Server) {
	t.Helper()
	pki := authtest.New(t)
	inv := inventorytest.Start(t, pki,
		inventorytest.Product("SKU-1", "Widget", "EUR", 1250, 10),
		inventorytest.Product("SKU-2", "Gadget", "EUR", 99, 0),
		inventorytest.Product("SKU-3", "Gizmo", "EUR", 500, 3),
	)
	conn := pki.DialAs("order", "inventory", inv.Addr())
	return peers.NewCatalog(inventoryv1.NewInventoryServiceClient(conn), timeout), inv
}

func TestProducts(t *testing.T) {
	t.Parallel()

	t.Run("returns the products by SKU", func(t *testing.T) {
		t.Parallel()
		c, _ := setup(t, time.Second)
		got, err := c.Products(context.Background(), []string{"SKU-1", "SKU-2"})
		require.NoError(t, err)
		require.Equal(t, map[string]app.Product{
			"SKU-1": {SKU: "SKU-1", Name: "Widget", UnitPrice: order.Money{Currency: "EUR", Minor: 1250}, Available: 10},
			"SKU-2": {SKU: "SKU-2", Name: "Gadget", UnitPrice: order.Money{Currency: "EUR", Minor: 99}, Available: 0},
		}, got)
	})

	t.Run("an unknown SKU is NotFound naming its order line", func(t *testing.T) {
		t.Parallel()
		c, _ := setup(t, time.Second)
		_, err := c.Products(context.Background(), []string{"SKU-1", "SKU-2", "NOPE", "NADA"})
		var de *order.Error
		require.ErrorAs(t, err, &de)
		require.ErrorIs(t, err, order.ErrNotFound)
		require.Equal(t, `items[2].sku: unknown SKU "NOPE"`, de.Error(), "the inventory's skus[2] is the order's items[2]")
	})

	t.Run("follows page tokens", func(t *testing.T) {
		t.Parallel()
		c, inv := setup(t, time.Second)
		inv.PageSize(1)
		got, err := c.Products(context.Background(), []string{"SKU-1", "SKU-2", "SKU-3"})
		require.NoError(t, err)
		require.Len(t, got, 3)
		require.Equal(t, int64(3), inv.Calls())
	})

	t.Run("calls as the order service, whoever the order is for", func(t *testing.T) {
		t.Parallel()
		c, inv := setup(t, time.Second)
		_, err := c.Products(caller.With(context.Background(), caller.Identity{User: "user-42"}), []string{"SKU-1"})
		require.NoError(t, err)
		require.Equal(t, []string{"order"}, inv.Callers())
	})

	t.Run("an unavailable catalog is ErrCatalogUnavailable", func(t *testing.T) {
		t.Parallel()
		c, inv := setup(t, time.Second)
		inv.FailWith(status.Error(codes.Unavailable, "down"))
		_, err := c.Products(context.Background(), []string{"SKU-1"})
		require.ErrorIs(t, err, app.ErrCatalogUnavailable)
	})

	t.Run("a slow catalog times out as ErrCatalogUnavailable", func(t *testing.T) {
		t.Parallel()
		c, inv := setup(t, 50*time.Millisecond)
		inv.Delay(5 * time.Second)
		start := time.Now()
		_, err := c.Products(context.Background(), []string{"SKU-1"})
		require.ErrorIs(t, err, app.ErrCatalogUnavailable)
		require.Less(t, time.Since(start), 2*time.Second)
	})

	t.Run("a NotFound answer is the domain's not found, naming the line only when it can", func(t *testing.T) {
		t.Parallel()
		c, inv := setup(t, time.Second)
		for msg, want := range map[string]string{
			"sku NOPE":                  "items: unknown SKU",
			`skus[7]: "X" not found`:    "items: unknown SKU", // beyond the request
			`skus[1]: "ANY" not found`:  `items[1].sku: unknown SKU "SKU-2"`,
			`skus[01]: "ANY" not found`: `items[1].sku: unknown SKU "SKU-2"`,
		} {
			inv.FailWith(status.Error(codes.NotFound, msg))
			_, err := c.Products(context.Background(), []string{"SKU-1", "SKU-2"})
			var de *order.Error
			require.ErrorAs(t, err, &de, msg)
			require.ErrorIs(t, err, order.ErrNotFound)
			require.NotErrorIs(t, err, app.ErrCatalogUnavailable)
			require.Equal(t, want, de.Error(), msg)
		}
	})

	t.Run("other failures are internal", func(t *testing.T) {
		t.Parallel()
		c, inv := setup(t, time.Second)
		inv.FailWith(status.Error(codes.Internal, "boom"))
		_, err := c.Products(context.Background(), []string{"SKU-1"})
		require.Error(t, err)
		require.NotErrorIs(t, err, app.ErrCatalogUnavailable)
		require.NotErrorIs(t, err, order.ErrNotFound)
	})

	t.Run("the caller giving up is not the catalog's fault", func(t *testing.T) {
		t.Parallel()
		c, inv := setup(t, 5*time.Second)
		inv.Delay(5 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Products(ctx, []string{"SKU-1"})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NotErrorIs(t, err, app.ErrCatalogUnavailable)
	})
}
