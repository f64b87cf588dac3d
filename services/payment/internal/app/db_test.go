package app_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/pgtest"
)

// newTestDB returns a pool on a fresh, migrated payment database that is
// dropped when the test ends. Its 8 connections let the race tests hold a
// table lock, a blocked ProcessPayment and a blocked refund while they
// watch pg_stat_activity.
func newTestDB(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	_, pool := pgtest.NewDatabase(tb, db.Payment, pgtest.WithMaxConns(8))
	return pool
}
