package projection_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/services/order/internal/projection"
)

// TestRebuildSwapsWithoutFailingOrGoingBackwards rebuilds the view while
// the live projector writes it, events keep coming and readers read every
// order in a loop: no read fails, no order's versions ever decrease, and
// the new view equals the write side's history.
func TestRebuildSwapsWithoutFailingOrGoingBackwards(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	tb.projector(t, projection.Table, "order-read", nil, projection.Options{})
	before := burst(t, 15)
	tb.publish(t, before.events...)
	before.requireConverged(t, tb, projection.Table, 20*time.Second)

	// A view that lost its way (a bug, a bad migration): the rebuild
	// repairs it from the topics.
	var broken uuid.UUID
	for id := range before.want {
		broken = id
		break
	}
	_, err := tb.pool.Exec(context.Background(), `UPDATE order_views SET total_minor = -1 WHERE order_id = $1`, broken)
	require.NoError(t, err)

	reader := projection.NewReader(tb.pool, time.Second)
	ctx, stopReaders := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	reads := make(chan int, 4)
	for r := range 4 {
		wg.Go(func() {
			last := map[uuid.UUID][3]int64{}
			n := 0
			defer func() { reads <- n }()
			for ctx.Err() == nil {
				for _, o := range before.orders[r*len(before.orders)/4 : (r+1)*len(before.orders)/4] {
					v, err := reader.Get(ctx, o.id, 0)
					if ctx.Err() != nil {
						return
					}
					if err != nil {
						errs <- err
						return
					}
					n++
					got := [3]int64{v.OrderVersion, v.PaymentVersion, v.InventoryVersion}
					prev := last[o.id]
					for i := range got {
						if got[i] < prev[i] {
							errs <- &backwards{id: o.id, prev: prev, got: got}
							return
						}
					}
					last[o.id] = got
				}
				if _, _, err := reader.List(ctx, projection.ListQuery{CustomerID: "cust-1", PageSize: 50}); err != nil && ctx.Err() == nil {
					errs <- err
					return
				}
			}
		})
	}

	// More orders while the rebuild runs: some the rebuild reads, some
	// only the live projector (they arrive after the rebuild's end
	// offsets); the merge at the swap keeps both.
	during := burst(t, 10)
	tb.publish(t, during.events[:len(during.events)/2]...)
	rctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	m, err := projection.NewMetrics(nil)
	require.NoError(t, err)
	go func() {
		tb.publish(t, during.events[len(during.events)/2:]...)
	}()
	stats, err := projection.Rebuild(rctx, tb.pool, tb.keys, projection.RebuildConfig{Brokers: tb.brokers}, m, nil)
	require.NoError(t, err)
	require.GreaterOrEqual(t, stats.Orders, int64(len(before.want)))

	during.requireConverged(t, tb, projection.Table, 20*time.Second)
	// The broken row is repaired: its history says 1000.
	before.requireConverged(t, tb, projection.Table, 5*time.Second)
	stopReaders()
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	total := 0
	for range 4 {
		total += <-reads
	}
	require.Positive(t, total)
	t.Logf("rebuild: %d orders in %s (writers held %s); %d reads meanwhile", stats.Orders, stats.Took, stats.Swap, total)

	// The new table has the view's index names; the shadow is gone.
	var names []string
	rows, err := tb.pool.Query(context.Background(), `SELECT indexname FROM pg_indexes WHERE tablename = 'order_views' ORDER BY 1`)
	require.NoError(t, err)
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		names = append(names, n)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"order_views_customer_idx", "order_views_customer_status_idx", "order_views_pkey"}, names)
	var shadows int
	require.NoError(t, tb.pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_tables WHERE tablename LIKE 'order_views_%'`).Scan(&shadows))
	require.Zero(t, shadows)
}

type backwards struct {
	id        uuid.UUID
	prev, got [3]int64
}

func (b *backwards) Error() string {
	return "order " + b.id.String() + " went backwards"
}
