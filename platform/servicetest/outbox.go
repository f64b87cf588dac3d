package servicetest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// OutboxEvents returns the event types a service's outbox holds for
// aggregateID, in the order they were written.
func OutboxEvents(tb testing.TB, pool *pgxpool.Pool, aggregateID string) []string {
	tb.Helper()
	rows, err := pool.Query(context.Background(), "SELECT event_type FROM outbox WHERE aggregate_id = $1 ORDER BY id", aggregateID)
	require.NoError(tb, err)
	defer rows.Close()
	var types []string
	for rows.Next() {
		var s string
		require.NoError(tb, rows.Scan(&s))
		types = append(types, s)
	}
	require.NoError(tb, rows.Err())
	return types
}
