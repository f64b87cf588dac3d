package grpcapi_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/pgtest"
)

// newTestDB returns a pool on a fresh, migrated payment database that is
// dropped when the test ends.
func newTestDB(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	_, pool := pgtest.NewDatabase(tb, db.Payment)
	return pool
}
