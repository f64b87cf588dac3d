package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// LockWaiters counts the sessions of pool's database that wait for a lock
// while running a statement LIKE like ("%": any statement).
func LockWaiters(tb testing.TB, pool *pgxpool.Pool, like string) int {
	tb.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1`, like).Scan(&n); err != nil {
		tb.Fatalf("pgtest: count lock waiters: %v", err)
	}
	return n
}

// WaitBlocked waits up to 10 s until one session of pool's database runs
// the sqlc query named query and waits for a lock.
func WaitBlocked(tb testing.TB, pool *pgxpool.Pool, query string) {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); LockWaiters(tb, pool, "-- name: "+query+" %") != 1; {
		if time.Now().After(deadline) {
			tb.Fatalf("pgtest: no session blocked in %s", query)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
