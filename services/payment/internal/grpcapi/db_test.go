package grpcapi_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/pgtest"
)

// newTestDB returns a pool on a fresh, migrated payment database that is
// dropped when the test ends: pgtest's (4 connections), or, with a
// lockTimeout, one of at most 4 connections whose lock waits fail after
// lockTimeout (SQLSTATE 55P03).
func newTestDB(tb testing.TB, lockTimeout time.Duration) *pgxpool.Pool {
	tb.Helper()
	url, pool := pgtest.NewDatabase(tb, db.Payment)
	if lockTimeout <= 0 {
		return pool
	}
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(tb, err)
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = strconv.FormatInt(lockTimeout.Milliseconds(), 10)
	pool, err = pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)
	return pool
}
