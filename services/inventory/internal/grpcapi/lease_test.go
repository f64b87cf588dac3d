package grpcapi_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/servicetest"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
)

// A claim lost under a slow but live holder (servicetest.LostClaim): the
// first ReserveStock waits inside its handler while its claim disappears,
// and the retry with the same key runs beside it. The database is the
// second line: one reservation, stock taken once, one event, and both
// callers are answered with that reservation.
func TestLostClaimStillReservesOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	sku := b.addProduct(t, "LEASE-1", 10)
	key := newKey()
	req := &inventoryv1.ReserveStockRequest{OrderId: newOrderID(), Items: items(sku, 3)}
	redisKey := b.idemKeys + idempotency.Key(caller.Identity{Service: "orchestrator"}.Scope(),
		inventoryv1.InventoryService_ReserveStock_FullMethodName, key)

	r1, r2 := servicetest.LostClaim(t, b.pool, b.rdb, redisKey, "reservations",
		func() (*inventoryv1.ReserveStockResponse, metadata.MD, error) {
			var header metadata.MD
			resp, err := b.client.ReserveStock(withKey(ctx, key), req, grpc.Header(&header))
			return resp, header, err
		})
	require.Equal(t, inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED, r1.GetReservation().GetStatus())
	require.Equal(t, r1.GetReservation().GetReservationId(), r2.GetReservation().GetReservationId(),
		"both answered with the one reservation")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1`, req.GetOrderId()))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE aggregate_id = $1`, req.GetOrderId()))
	avail, reserved := b.stock(t, sku)
	require.Equal(t, []int64{7, 3}, []int64{avail, reserved}, "stock taken once")
}
