package relay

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/outbox/outboxdb"
	"github.com/goodgo/goodgo/platform/pgtest"
)

// TestPoolPlansEachStatementOnce reads and marks small batches on a
// connection of the relay's pool, as at a saga's trickle of events, and
// checks that PostgreSQL planned each statement once (pg_prepared_statements
// of that session: no custom plan) and that the plans it keeps read the
// indexes, with a backlog of published rows in the table. Under the default
// plan_cache_mode every MarkPublished of one or two ids was planned anew.
func TestPoolPlansEachStatementOnce(t *testing.T) {
	t.Parallel()
	ddl, err := os.ReadFile("../../../../db/outbox/schema/outbox.sql")
	require.NoError(t, err)
	url, _ := pgtest.NewDatabase(t, fstest.MapFS{
		"000001_outbox.up.sql":   {Data: ddl},
		"000001_outbox.down.sql": {Data: []byte("DROP TABLE outbox; DROP TABLE outbox_lanes;")},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg, err := poolConfig(url, "plans", 1)
	require.NoError(t, err)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()

	q := outboxdb.New(conn)
	require.NoError(t, q.SeedLanes(ctx, outbox.Lanes))
	lanes, err := q.ClaimLanes(ctx, outboxdb.ClaimLanesParams{Owner: "plans", TtlMs: time.Minute.Milliseconds(), MaxLanes: 2})
	require.NoError(t, err)
	require.Len(t, lanes, 2)
	// 5,000 published rows and 40 pending ones in the two lanes.
	_, err = conn.Exec(ctx, `INSERT INTO outbox (event_id, lane, topic, aggregate_type, aggregate_id,
			aggregate_version, event_type, content_type, payload, published_at)
		SELECT gen_random_uuid(), ($1::smallint[])[1 + g % 2], 'orders', 'order', g::text, 1, 'order.placed',
			'application/x-protobuf', '\x00', CASE WHEN g <= 5000 THEN now() END
		FROM generate_series(1, 5040) g`, lanes)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "ANALYZE outbox")
	require.NoError(t, err)

	marked := 0
	for i := range 20 {
		limit := 1 + i%2 // batches of one and two rows
		var ids []int64
		rows, err := conn.Query(ctx, pendingSQL[len(lanes)], limit, lanes[0], lanes[1])
		require.NoError(t, err)
		for rows.Next() {
			vals, err := rows.Values()
			require.NoError(t, err)
			ids = append(ids, vals[0].(int64))
		}
		require.NoError(t, rows.Err())
		require.Len(t, ids, limit)
		n, err := q.MarkPublished(ctx, outboxdb.MarkPublishedParams{Ids: ids, Owner: "plans"})
		require.NoError(t, err)
		require.EqualValues(t, limit, n)
		marked += limit
	}
	require.Equal(t, 30, marked)

	plans := map[string]string{} // prepared statement name by the statement's role
	rows, err := conn.Query(ctx, `SELECT name, statement, generic_plans, custom_plans FROM pg_prepared_statements`)
	require.NoError(t, err)
	for rows.Next() {
		var name, stmt string
		var generic, custom int64
		require.NoError(t, rows.Scan(&name, &stmt, &generic, &custom))
		require.Zero(t, custom, "custom plans of %s", stmt)
		switch {
		case strings.Contains(stmt, "MarkPublished"):
			plans["mark"] = name
			require.Equal(t, int64(20), generic)
		case stmt == pendingSQL[len(lanes)]:
			plans["read"] = name
			require.Equal(t, int64(20), generic)
		}
	}
	require.NoError(t, rows.Err())
	require.Len(t, plans, 2, "the read and the mark are prepared statements of the session")

	explain := func(stmt string) string { // EXPLAIN takes no parameters: literals
		rows, err := conn.Query(ctx, "EXPLAIN EXECUTE "+stmt)
		require.NoError(t, err)
		var b strings.Builder
		for rows.Next() {
			var line string
			require.NoError(t, rows.Scan(&line))
			b.WriteString(line + "\n")
		}
		require.NoError(t, rows.Err())
		return b.String()
	}
	read := explain(fmt.Sprintf("%s(100, %d, %d)", plans["read"], lanes[0], lanes[1]))
	require.Contains(t, read, "outbox_pending_idx", read)
	require.NotContains(t, read, "Seq Scan on outbox ", read)
	mark := explain(plans["mark"] + "('{1,2}', 'plans')")
	require.Contains(t, mark, "outbox_pkey", mark)
	require.NotContains(t, mark, "Seq Scan on outbox ", mark)
}
