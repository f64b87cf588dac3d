package projection_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/services/order/internal/projection"
)

// applyDirect applies evs through a Store, as the projector would, without
// Kafka.
func applyDirect(t testing.TB, store *projection.Store, evs ...ev) projection.Outcome {
	t.Helper()
	msgs := make([]projection.Message, len(evs))
	for i, e := range evs {
		km := e.message()
		ie, err := inbox.Decode(km)
		require.NoError(t, err)
		c, err := projection.Decode(ie)
		require.NoError(t, err)
		msgs[i] = projection.Message{Kafka: km, Change: c}
	}
	out, err := store.ApplyBatch(context.Background(), msgs)
	require.NoError(t, err)
	return out
}

func newStore(t testing.TB) (*projection.Store, *projection.Reader, *pgxpool.Pool) {
	t.Helper()
	_, pool := pgtest.NewDatabase(t, db.OrderRead)
	keys, err := keyring.New("k1", map[string][]byte{"k1": []byte("0123456789abcdef0123456789abcdef")})
	require.NoError(t, err)
	store, err := projection.NewStore(pool, projection.Table, "order-read", keys)
	require.NoError(t, err)
	return store, projection.NewReader(pool, 300*time.Millisecond), pool
}

func TestReaderListsACustomersOrdersNewestFirstInPages(t *testing.T) {
	t.Parallel()
	store, reader, pool := newStore(t)
	ctx := context.Background()
	var want []uuid.UUID // newest first
	for i := range 25 {
		o := newOrder("carol")
		c := o.created(t, int64(100+i))
		c.at = time.Date(2026, 12, 1, 0, 0, i/2, 0, time.UTC) // pairs share a created_at: the id breaks ties
		evs := []ev{c}
		if i%3 == 0 {
			evs = append(evs, o.confirmed(t))
		}
		applyDirect(t, store, evs...)
		want = append([]uuid.UUID{o.id}, want...)
	}
	applyDirect(t, store, newOrder("dave").created(t, 1))

	var got []uuid.UUID
	var after *projection.Cursor
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5)
		page, next, err := reader.List(ctx, projection.ListQuery{CustomerID: "carol", PageSize: 10, After: after})
		require.NoError(t, err)
		for _, v := range page {
			require.Equal(t, "carol", v.CustomerID)
			got = append(got, v.OrderID)
		}
		if next == nil {
			break
		}
		after = next
	}
	require.Len(t, got, 25)
	// Ties on created_at are ordered by id, descending.
	for i := 1; i < len(got); i++ {
		require.NotEqual(t, got[i-1], got[i])
	}
	confirmed, _, err := reader.List(ctx, projection.ListQuery{CustomerID: "carol", Status: projection.StatusConfirmed, PageSize: 100})
	require.NoError(t, err)
	require.Len(t, confirmed, 9)
	none, next, err := reader.List(ctx, projection.ListQuery{CustomerID: "nobody", PageSize: 100})
	require.NoError(t, err)
	require.Empty(t, none)
	require.Nil(t, next)

	t.Run("the queries use the customer indexes, not a sequential scan", func(t *testing.T) {
		p := pool
		_, err := p.Exec(ctx, "ANALYZE order_views")
		require.NoError(t, err)
		conn, err := p.Acquire(ctx)
		require.NoError(t, err)
		defer conn.Release()
		_, err = conn.Exec(ctx, "SET enable_seqscan = off") // a tiny table would be scanned: ask whether an index can serve
		require.NoError(t, err)
		for _, q := range []string{
			`EXPLAIN SELECT * FROM order_views WHERE customer_id = 'carol' AND (created_at, order_id) < ('infinity'::timestamptz, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid) ORDER BY created_at DESC, order_id DESC LIMIT 11`,
			`EXPLAIN SELECT * FROM order_views WHERE customer_id = 'carol' AND status = 'CONFIRMED' AND (created_at, order_id) < ('infinity'::timestamptz, 'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid) ORDER BY created_at DESC, order_id DESC LIMIT 11`,
		} {
			var plan string
			rows, err := conn.Query(ctx, q)
			require.NoError(t, err)
			for rows.Next() {
				var line string
				require.NoError(t, rows.Scan(&line))
				plan += line + "\n"
			}
			require.NoError(t, rows.Err())
			require.NotContains(t, plan, "Seq Scan", plan)
			require.NotContains(t, plan, "Sort", plan)
		}
	})
}

func TestReaderWaitsForTheVersionAskedFor(t *testing.T) {
	t.Parallel()
	store, reader, _ := newStore(t)
	ctx := context.Background()
	o := newOrder("erin")
	applyDirect(t, store, o.created(t, 10))
	v, err := reader.Get(ctx, o.id, 1)
	require.NoError(t, err)
	require.Equal(t, int64(1), v.OrderVersion)

	// Version 2 arrives while the read waits.
	confirmed := o.confirmed(t)
	done := make(chan error, 1)
	go func() {
		_, err := reader.Get(ctx, o.id, 2)
		done <- err
	}()
	applyDirect(t, store, confirmed)
	require.NoError(t, <-done)

	// Version 3 never comes: Unavailable-to-be, saying how far behind.
	_, err = reader.Get(ctx, o.id, 3)
	var behind *projection.BehindError
	require.ErrorAs(t, err, &behind)
	require.Equal(t, projection.BehindError{Have: 2, Want: 3}, *behind)

	_, err = reader.Get(ctx, uuid.New(), 0)
	require.ErrorIs(t, err, projection.ErrNotFound)
	// A payment read before its order.created is not an order yet.
	held := newOrder("frank")
	applyDirect(t, store, held.paid(t))
	_, err = reader.Get(ctx, held.id, 0)
	require.ErrorIs(t, err, projection.ErrNotFound)
}
