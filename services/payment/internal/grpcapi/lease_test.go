package grpcapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/idempotency"
)

// lockWaiters counts the connections to pool's database waiting for a lock.
func lockWaiters(t *testing.T, pool *pgxpool.Pool) int {
	return count(t, pool, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)
}

// A claim lost under a slow but live holder: the first ProcessPayment is
// paused inside its handler (its INSERT waits for a lock the test holds)
// while its claim disappears from Redis, as it does when the lease runs out
// because the process was stopped and could not renew it. The retry with
// the same key then claims the key and runs beside the first. The database
// is the second line: one payment, one event, and both callers are
// answered with that payment.
func TestLostClaimStillPaysOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	order, key := newOrder(), newKey()
	redisKey := b.idemKeys + idempotency.Key(caller.Identity{Service: "orchestrator"}.Scope(),
		paymentv1.PaymentService_ProcessPayment_FullMethodName, key)

	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = tx.Exec(ctx, `LOCK TABLE payments IN SHARE MODE`) // INSERTs wait
	require.NoError(t, err)

	type answer struct {
		resp     *paymentv1.ProcessPaymentResponse
		replayed bool
		err      error
	}
	pay := func(out chan<- answer) {
		var header metadata.MD
		resp, err := b.client.ProcessPayment(withKey(key), processReq(order, 700, "tok_visa"), grpc.Header(&header))
		out <- answer{resp, len(header.Get(idempotency.ReplayedHeader)) > 0, err}
	}
	first, second := make(chan answer, 1), make(chan answer, 1)
	go pay(first)
	require.Eventually(t, func() bool { return lockWaiters(t, b.pool) == 1 }, 10*time.Second, 10*time.Millisecond,
		"the first call waits inside its handler")
	n, err := b.rdb.Exists(ctx, redisKey).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "under its claim")

	require.NoError(t, b.rdb.Del(ctx, redisKey).Err()) // the lease ran out
	go pay(second)
	require.Eventually(t, func() bool { return lockWaiters(t, b.pool) == 2 }, 10*time.Second, 10*time.Millisecond,
		"the retry claimed the key again and runs too")

	require.NoError(t, tx.Rollback(ctx))
	a1, a2 := <-first, <-second
	require.NoError(t, a1.err)
	require.NoError(t, a2.err)
	require.False(t, a1.replayed)
	require.False(t, a2.replayed, "the second ran its handler: not a replay")
	require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED, a1.resp.GetPayment().GetStatus())
	require.Equal(t, a1.resp.GetPayment().GetPaymentId(), a2.resp.GetPayment().GetPaymentId(), "both answered with the one payment")
	require.Equal(t, 1, paymentsOf(t, b, order), "charged once")
	require.Equal(t, []string{event.PaymentProcessed}, eventsOf(t, b, a1.resp.GetPayment().GetPaymentId()))
}
