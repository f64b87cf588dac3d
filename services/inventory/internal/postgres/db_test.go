package postgres_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/pgtest"
)

// newDatabase returns a pool on a fresh migrated inventory database (with
// the seeded demo catalog). The pool holds at most 8 connections: enough
// for the concurrency tests to contend on row locks with several
// transactions and for the race tests to hold a lock, a blocked Reserve and
// a blocked Release while they watch pg_stat_activity; few enough, with
// pgtest's limit on databases per test binary, for the workspace's parallel
// tests to stay under PostgreSQL's max_connections.
func newDatabase(t testing.TB) *pgxpool.Pool {
	t.Helper()
	_, pool := pgtest.NewDatabase(t, db.Inventory, pgtest.WithMaxConns(8))
	return pool
}
