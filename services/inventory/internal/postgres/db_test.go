package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/pgtest"
)

// newDatabase returns a pool on a fresh migrated inventory database (with
// the seeded demo catalog). The pool is larger than pgtest's so that the
// concurrency tests really contend on row locks rather than on the pool.
func newDatabase(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url, _ := pgtest.NewDatabase(t, db.Inventory)
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	cfg.MaxConns = 32
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}
