package grpcapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/idempotency"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
)

// A claim lost under a slow but live holder: the first ReserveStock is
// paused inside its handler (its INSERT waits for a lock the test holds)
// while its claim disappears from Redis, as it does when the lease runs out
// because the process was stopped and could not renew it. The retry with
// the same key then claims the key and runs beside the first. The database
// is the second line: one reservation, stock taken once, one event, and
// both callers are answered with that reservation.
func TestLostClaimStillReservesOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	sku := b.addProduct(t, "LEASE-1", 10)
	key := newKey()
	req := &inventoryv1.ReserveStockRequest{OrderId: newOrderID(), Items: items(sku, 3)}
	redisKey := b.idemKeys + idempotency.Key(caller.Identity{Service: "orchestrator"}.Scope(),
		inventoryv1.InventoryService_ReserveStock_FullMethodName, key)
	lockWaiters := func() int {
		return b.count(t, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)
	}

	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `LOCK TABLE reservations IN SHARE MODE`) // INSERTs wait
	require.NoError(t, err)

	type answer struct {
		resp     *inventoryv1.ReserveStockResponse
		replayed bool
		err      error
	}
	reserve := func(out chan<- answer) {
		var header metadata.MD
		resp, err := b.client.ReserveStock(withKey(ctx, key), req, grpc.Header(&header))
		out <- answer{resp, len(header.Get(idempotency.ReplayedHeader)) > 0, err}
	}
	first, second := make(chan answer, 1), make(chan answer, 1)
	go reserve(first)
	require.Eventually(t, func() bool { return lockWaiters() == 1 }, 10*time.Second, 10*time.Millisecond,
		"the first call waits inside its handler")
	n, err := b.rdb.Exists(ctx, redisKey).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "under its claim")

	require.NoError(t, b.rdb.Del(ctx, redisKey).Err()) // the lease ran out
	go reserve(second)
	require.Eventually(t, func() bool { return lockWaiters() == 2 }, 10*time.Second, 10*time.Millisecond,
		"the retry claimed the key again and runs too")

	require.NoError(t, tx.Rollback(ctx))
	a1, a2 := <-first, <-second
	require.NoError(t, a1.err)
	require.NoError(t, a2.err)
	require.False(t, a1.replayed)
	require.False(t, a2.replayed, "the second ran its handler: not a replay")
	require.Equal(t, inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED, a1.resp.GetReservation().GetStatus())
	require.Equal(t, a1.resp.GetReservation().GetReservationId(), a2.resp.GetReservation().GetReservationId(),
		"both answered with the one reservation")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1`, req.GetOrderId()))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE aggregate_id = $1`, req.GetOrderId()))
	avail, reserved := b.stock(t, sku)
	require.Equal(t, []int64{7, 3}, []int64{avail, reserved}, "stock taken once")
}
