package pgtest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/postgres"
)

// LockTimeoutPool opens a pool of at most DefaultMaxConns connections on
// dbURL (a URL NewDatabase returned) whose lock waits fail after
// lockTimeout (SQLSTATE 55P03), for tests of how a service answers a lock
// it cannot get. It is closed when the test ends.
func LockTimeoutPool(tb testing.TB, dbURL string, lockTimeout time.Duration) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	require.NoError(tb, err)
	cfg.AfterConnect = postgres.AfterConnect
	cfg.MaxConns = DefaultMaxConns
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = strconv.FormatInt(lockTimeout.Milliseconds(), 10)
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)
	return pool
}
