package grpcapi_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

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
	return pgtest.LockTimeoutPool(tb, url, lockTimeout)
}
