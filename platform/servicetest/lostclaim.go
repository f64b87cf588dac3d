package servicetest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/pgtest"
)

// LostClaim plays a claim lost under a slow but live holder: the first
// call is paused inside its handler (its INSERT into table waits for a lock
// the test holds) while its claim, redisKey, disappears from Redis, as it
// does when the lease runs out because the process was stopped and could
// not renew it. The retry with the same key then claims the key and runs
// beside the first. call makes the call and returns its response and
// header. LostClaim returns both responses once both succeeded, neither as
// a replay; the caller checks that the database, the second line, did the
// work once.
func LostClaim[R any](t *testing.T, pool *pgxpool.Pool, rdb *redis.Client, redisKey, table string, call func() (R, metadata.MD, error)) (R, R) {
	t.Helper()
	ctx := t.Context()
	lockWaiters := func() int { return pgtest.LockWaiters(t, pool, "%") }

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	_, err = tx.Exec(ctx, `LOCK TABLE `+table+` IN SHARE MODE`) // INSERTs wait
	require.NoError(t, err)

	type answer struct {
		resp     R
		replayed bool
		err      error
	}
	run := func(out chan<- answer) {
		resp, header, err := call()
		out <- answer{resp, len(header.Get(idempotency.ReplayedHeader)) > 0, err}
	}
	first, second := make(chan answer, 1), make(chan answer, 1)
	go run(first)
	require.Eventually(t, func() bool { return lockWaiters() == 1 }, 10*time.Second, 10*time.Millisecond,
		"the first call waits inside its handler")
	n, err := rdb.Exists(ctx, redisKey).Result()
	require.NoError(t, err)
	require.EqualValues(t, 1, n, "under its claim")

	require.NoError(t, rdb.Del(ctx, redisKey).Err()) // the lease ran out
	go run(second)
	require.Eventually(t, func() bool { return lockWaiters() == 2 }, 10*time.Second, 10*time.Millisecond,
		"the retry claimed the key again and runs too")

	require.NoError(t, tx.Rollback(ctx))
	a1, a2 := <-first, <-second
	require.NoError(t, a1.err)
	require.NoError(t, a2.err)
	require.False(t, a1.replayed)
	require.False(t, a2.replayed, "the second ran its handler: not a replay")
	return a1.resp, a2.resp
}
