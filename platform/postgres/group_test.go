package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/postgres"
)

const insertOrder = `INSERT INTO orders (id, customer_id) VALUES ($1, 'c') ON CONFLICT DO NOTHING RETURNING txid_current()`

// blockedGroup returns a Group of one batch in flight whose first
// statement waits for a row lock, and the function that lets it go: the
// statements sent meanwhile queue up and go out as the next batch.
func blockedGroup(t *testing.T) (g *postgres.Group, pool *pgxpool.Pool, release func() int64) {
	t.Helper()
	_, pool = pgtest.NewDatabase(t, migrations)
	ctx := t.Context()
	_, err := pool.Exec(ctx, `INSERT INTO orders (id, customer_id) VALUES (0, 'lock')`)
	require.NoError(t, err)
	g, err = postgres.NewGroup(pool, postgres.GroupOptions{MaxInFlight: 1, Timeout: time.Minute})
	require.NoError(t, err)
	blocker, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = blocker.Exec(ctx, `SELECT 1 FROM orders WHERE id = 0 FOR UPDATE`)
	require.NoError(t, err)
	t.Cleanup(func() { _ = blocker.Rollback(context.Background()) })
	first := make(chan int64, 1)
	go func() {
		var xid int64
		err := g.QueryRow(ctx, `UPDATE orders SET version = version + 1 WHERE id = 0 RETURNING txid_current()`).Scan(&xid)
		if err != nil {
			xid = -1
		}
		first <- xid
	}()
	waitForLock(t, pool)
	return g, pool, func() int64 {
		require.NoError(t, blocker.Commit(ctx))
		xid := <-first
		require.Positive(t, xid)
		return xid
	}
}

// waitForLock waits until a statement of pool's database waits for a
// lock: the Group's first statement is on its way and holds the only slot.
func waitForLock(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	require.Eventually(t, func() bool {
		var waiting int
		err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting == 1
	}, 10*time.Second, 5*time.Millisecond)
}

// waitQueued waits until n statements wait for a batch.
func waitQueued(t *testing.T, g *postgres.Group, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return g.Queued() == n }, 10*time.Second, time.Millisecond)
}

func TestGroupCommitsConcurrentStatementsTogether(t *testing.T) {
	t.Parallel()
	g, pool, release := blockedGroup(t)
	const n = 10
	xids := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = g.QueryRow(t.Context(), insertOrder, i+1).Scan(&xids[i]) })
	}
	waitQueued(t, g, n)
	firstXid := release()
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.Equal(t, xids[0], xids[i], "statement %d in the batch's transaction", i)
	}
	require.NotEqual(t, firstXid, xids[0])
	var count int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM orders WHERE id BETWEEN 1 AND $1`, n).Scan(&count))
	require.Equal(t, n, count)
}

func TestGroupKeepsEachCallersOutcome(t *testing.T) {
	t.Parallel()
	g, pool, release := blockedGroup(t)
	ctx := t.Context()
	_, err := pool.Exec(ctx, `INSERT INTO orders (id, customer_id) VALUES (2, 'there before')`)
	require.NoError(t, err)
	var (
		wg                      sync.WaitGroup
		okErr1, okErr3, dupErr  error
		failErr                 error
		xid1, xid3, xidDup, one int64
	)
	wg.Go(func() { okErr1 = g.QueryRow(ctx, insertOrder, 1).Scan(&xid1) })
	waitQueued(t, g, 1)
	wg.Go(func() { dupErr = g.QueryRow(ctx, insertOrder, 2).Scan(&xidDup) })
	waitQueued(t, g, 2)
	wg.Go(func() { failErr = g.QueryRow(ctx, `SELECT 1 / $1::int`, 0).Scan(&one) })
	waitQueued(t, g, 3)
	wg.Go(func() { okErr3 = g.QueryRow(ctx, insertOrder, 3).Scan(&xid3) })
	waitQueued(t, g, 4)
	release()
	wg.Wait()

	require.NoError(t, okErr1)
	require.NoError(t, okErr3)
	require.ErrorIs(t, dupErr, pgx.ErrNoRows, "a statement that matches nothing is its caller's answer alone")
	var pgErr *pgconn.PgError
	require.ErrorAs(t, failErr, &pgErr)
	require.Equal(t, "22012", pgErr.Code, "division by zero, its caller's error alone")
	rows, err := pool.Query(ctx, `SELECT id FROM orders WHERE id BETWEEN 1 AND 3 ORDER BY id`)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.Equal(t, []int64{1, 2, 3}, ids, "the other statements committed once the failing one was set apart")
	var customer string
	require.NoError(t, pool.QueryRow(ctx, `SELECT customer_id FROM orders WHERE id = 2`).Scan(&customer))
	require.Equal(t, "there before", customer)
}

func TestGroupDropsAStatementWhoseCallerLeftWhileQueued(t *testing.T) {
	t.Parallel()
	g, pool, release := blockedGroup(t)
	ctx := t.Context()
	cctx, cancel := context.WithCancel(ctx)
	left := make(chan error, 1)
	go func() {
		var xid int64
		left <- g.QueryRow(cctx, insertOrder, 7).Scan(&xid)
	}()
	waitQueued(t, g, 1)
	cancel()
	require.ErrorIs(t, <-left, context.Canceled)
	require.Zero(t, g.Queued())
	release()
	// A later statement goes through; the one whose caller left never ran.
	var xid int64
	require.NoError(t, g.QueryRow(ctx, insertOrder, 8).Scan(&xid))
	var count int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = 7`).Scan(&count))
	require.Zero(t, count)
}

func TestGroupWaitsForAStatementSentBeforeItsCallerLeft(t *testing.T) {
	t.Parallel()
	_, pool := pgtest.NewDatabase(t, migrations)
	ctx := t.Context()
	g, err := postgres.NewGroup(pool, postgres.GroupOptions{Timeout: time.Minute})
	require.NoError(t, err)
	blocker, err := pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = blocker.Rollback(context.Background()) })
	_, err = blocker.Exec(ctx, `INSERT INTO orders (id, customer_id) VALUES (5, 'blocker')`)
	require.NoError(t, err)
	// Sent at once (a free slot), then waits for the blocker's row.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		var xid int64
		done <- g.QueryRow(cctx, insertOrder, 5).Scan(&xid)
	}()
	waitForLock(t, pool)
	cancel()
	select {
	case err := <-done:
		t.Fatalf("returned before its sent statement's outcome was known: %v", err)
	case <-time.After(50 * time.Millisecond): // a window in which a wrong return would show, not a wait for a condition
	}
	require.NoError(t, blocker.Rollback(ctx))
	require.NoError(t, <-done, "the statement ran once the row was free, and its caller learns it")
}

func TestGroupSendsALoneStatementAlone(t *testing.T) {
	t.Parallel()
	pool, writes := countingPool(t)
	g, err := postgres.NewGroup(pool, postgres.GroupOptions{Timeout: time.Minute})
	require.NoError(t, err)
	var xid int64
	require.NoError(t, g.QueryRow(t.Context(), insertOrder, 1).Scan(&xid)) // prepares it
	before := writes.Load()
	require.NoError(t, g.QueryRow(t.Context(), insertOrder, 2).Scan(&xid))
	require.EqualValues(t, 1, writes.Load()-before, "one round trip")
}

func TestNewGroupNeedsATimeout(t *testing.T) {
	t.Parallel()
	_, pool := pgtest.NewDatabase(t, migrations)
	_, err := postgres.NewGroup(pool, postgres.GroupOptions{})
	require.ErrorContains(t, err, "Timeout is required")
}
