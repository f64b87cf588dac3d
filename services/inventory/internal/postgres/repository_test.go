package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
	"github.com/goodgo/goodgo/services/inventory/internal/postgres"
)

type testBundle struct {
	repo *postgres.Repository
	pool *pgxpool.Pool
}

func setup(t testing.TB, opts ...postgres.Option) testBundle {
	t.Helper()
	pool := newDatabase(t)
	w, err := outbox.NewWriter(nil, prometheus.NewRegistry())
	require.NoError(t, err)
	return testBundle{repo: postgres.NewRepository(pool, w, opts...), pool: pool}
}

// setupOrder is setup with a product T-A of available units, whose SKU it
// returns, and the id of an order yet to reserve.
func setupOrder(t testing.TB, available int64) (b testBundle, sku, orderID string) {
	t.Helper()
	b = setup(t)
	return b, b.addProduct(t, "T-A", available), newOrderID()
}

// failing returns a repository on b's database whose every write fails,
// with the error it returns, after its business rows and outbox rows are
// written (failAfter).
func (b testBundle) failing(t testing.TB) (*postgres.Repository, error) {
	t.Helper()
	boom := errors.New("injected failure after the outbox insert")
	w, err := outbox.NewWriter(nil, prometheus.NewRegistry())
	require.NoError(t, err)
	return postgres.NewRepository(b.pool, failAfter{w, boom}), boom
}

// lastEvent requires that aggregateID has n events, the last an eventType
// at version, unmarshals that one's payload into payload and returns it.
func (b testBundle) lastEvent(t testing.TB, aggregateID string, n int, eventType string, version int64, payload proto.Message) outboxRow {
	t.Helper()
	evs := b.events(t, aggregateID)
	require.Len(t, evs, n)
	last := evs[n-1]
	require.Equal(t, eventType, last.EventType)
	require.Equal(t, version, last.AggregateVersion)
	require.NoError(t, proto.Unmarshal(last.Payload, payload))
	return last
}

// concurrently runs, for each i below n, every one of calls with i in a
// goroutine of its own, waits for all of them and requires that none
// failed.
func concurrently(t testing.TB, n int, calls ...func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n*len(calls))
	for i := range n {
		for _, call := range calls {
			wg.Go(func() { errs <- call(i) })
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// addProduct inserts a product with available units and returns its SKU.
func (b testBundle) addProduct(t testing.TB, sku string, available int64) string {
	t.Helper()
	_, err := b.pool.Exec(context.Background(),
		`INSERT INTO products (sku, name, currency_code, unit_price_minor, available) VALUES ($1, $1, 'EUR', 100, $2)`,
		sku, available)
	require.NoError(t, err)
	return sku
}

// stock returns available, reserved and version of sku.
func (b testBundle) stock(t testing.TB, sku string) (available, reserved, version int64) {
	t.Helper()
	err := b.pool.QueryRow(context.Background(),
		`SELECT available, reserved, version FROM products WHERE sku = $1`, sku).Scan(&available, &reserved, &version)
	require.NoError(t, err)
	return available, reserved, version
}

type outboxRow struct {
	Topic, AggregateType, AggregateID, EventType string
	AggregateVersion                             int64
	Payload                                      []byte
}

// events returns the outbox rows of an aggregate id in id order.
func (b testBundle) events(t testing.TB, aggregateID string) []outboxRow {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		`SELECT topic, aggregate_type, aggregate_id, event_type, aggregate_version, payload
		 FROM outbox WHERE aggregate_id = $1 ORDER BY id`, aggregateID)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[outboxRow])
	require.NoError(t, err)
	return out
}

func (b testBundle) count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

func reserveRequest(t testing.TB, orderID string, items ...inventory.Item) inventory.ReserveRequest {
	t.Helper()
	req, err := inventory.NewReserveRequest(orderID, items)
	require.NoError(t, err)
	return req
}

// reserve reserves items for orderID, which has no reservation yet, and
// returns the reservation it created (RESERVED or REJECTED).
func (b testBundle) reserve(t testing.TB, orderID string, items ...inventory.Item) inventory.Reservation {
	t.Helper()
	res, created, err := b.repo.Reserve(context.Background(), reserveRequest(t, orderID, items...))
	require.NoError(t, err)
	require.True(t, created)
	return res
}

func newOrderID() string { return uuid.Must(uuid.NewV7()).String() }

func TestReserve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("takes every item and records the reservation with its event", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 10)
		c := b.addProduct(t, "T-C", 5)

		res := b.reserve(t, orderID, inventory.Item{SKU: c, Quantity: 5}, inventory.Item{SKU: a, Quantity: 3})
		require.Equal(t, inventory.StatusReserved, res.Status)
		require.Equal(t, orderID, res.OrderID)
		require.Equal(t, []inventory.Item{{SKU: a, Quantity: 3}, {SKU: c, Quantity: 5}}, res.Items)
		require.EqualValues(t, 1, res.Version)

		avail, reserved, version := b.stock(t, a)
		require.Equal(t, []int64{7, 3, 2}, []int64{avail, reserved, version}, "available, reserved, version of %s", a)
		avail, reserved, _ = b.stock(t, c)
		require.Equal(t, []int64{0, 5}, []int64{avail, reserved})

		stored, err := b.repo.Reservation(ctx, orderID)
		require.NoError(t, err)
		require.Equal(t, res.ID, stored.ID)
		require.Equal(t, res.Items, stored.Items)

		var payload inventoryv1.StockReserved
		ev := b.lastEvent(t, orderID, 1, event.InventoryReserved, 1, &payload)
		require.Equal(t, outboxRow{
			Topic: event.TopicInventory, AggregateType: event.AggregateReservation, AggregateID: orderID,
			EventType: event.InventoryReserved, AggregateVersion: 1, Payload: ev.Payload,
		}, ev)
		require.Equal(t, res.ID, payload.GetReservationId())
		require.Equal(t, orderID, payload.GetOrderId())
		require.Len(t, payload.GetItems(), 2)
	})

	t.Run("rejects the whole order when one item is short and takes nothing", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 10)
		z := b.addProduct(t, "T-Z", 1)

		// T-A is taken first (SKU order), then T-Z is short: T-A must come back.
		res := b.reserve(t, orderID, inventory.Item{SKU: a, Quantity: 4}, inventory.Item{SKU: z, Quantity: 2})
		require.Equal(t, inventory.StatusRejected, res.Status)
		require.Equal(t, inventory.RejectInsufficientStock, res.RejectReason)
		require.EqualValues(t, 1, res.Version)

		for sku, want := range map[string]int64{a: 10, z: 1} {
			avail, reserved, version := b.stock(t, sku)
			require.Equal(t, []int64{want, 0, 1}, []int64{avail, reserved, version}, sku)
		}
		stored, err := b.repo.Reservation(ctx, orderID)
		require.NoError(t, err)
		require.Equal(t, inventory.StatusRejected, stored.Status)
		require.Equal(t, res.Items, stored.Items, "a rejected reservation keeps the requested lines")

		var payload inventoryv1.StockRejected
		b.lastEvent(t, orderID, 1, event.InventoryRejected, 1, &payload)
		require.Equal(t, inventory.RejectInsufficientStock, payload.GetReason())
	})

	t.Run("returns the existing reservation for a repeated order and writes nothing", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 10)
		first := b.reserve(t, orderID, inventory.Item{SKU: a, Quantity: 2})
		again, created, err := b.repo.Reserve(ctx, reserveRequest(t, orderID, inventory.Item{SKU: a, Quantity: 2}))
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, first.ID, again.ID)
		require.Equal(t, first.Items, again.Items)
		require.Equal(t, first.Status, again.Status)

		avail, reserved, _ := b.stock(t, a)
		require.Equal(t, []int64{8, 2}, []int64{avail, reserved})
		require.Len(t, b.events(t, orderID), 1)
	})

	t.Run("fails on an unknown SKU and writes nothing", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 10)

		_, _, err := b.repo.Reserve(ctx, reserveRequest(t, orderID, inventory.Item{SKU: a, Quantity: 1}, inventory.Item{SKU: "T-NOPE", Quantity: 1}))
		var nf *inventory.NotFoundError
		require.ErrorAs(t, err, &nf)
		require.Equal(t, "T-NOPE", nf.Value)

		avail, _, version := b.stock(t, a)
		require.Equal(t, []int64{10, 1}, []int64{avail, version})
		require.Zero(t, b.count(t, `SELECT count(*) FROM reservations`))
		require.Zero(t, b.count(t, `SELECT count(*) FROM outbox`))
	})

	t.Run("writes neither business rows nor events when the transaction fails after the business write", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 10)
		failing, boom := b.failing(t)

		_, _, err := failing.Reserve(ctx, reserveRequest(t, orderID, inventory.Item{SKU: a, Quantity: 1}))
		require.ErrorIs(t, err, boom)
		avail, reserved, version := b.stock(t, a)
		require.Equal(t, []int64{10, 0, 1}, []int64{avail, reserved, version})
		require.Zero(t, b.count(t, `SELECT count(*) FROM reservations`))
		require.Zero(t, b.count(t, `SELECT count(*) FROM reservation_items`))
		require.Zero(t, b.count(t, `SELECT count(*) FROM outbox`))
	})

	t.Run("a failed release or adjustment leaves the stock, the status and the outbox as they were", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 10)
		b.reserve(t, orderID, inventory.Item{SKU: a, Quantity: 3})
		failing, boom := b.failing(t)

		_, _, err := failing.Release(ctx, orderID)
		require.ErrorIs(t, err, boom)
		_, err = failing.AdjustStock(ctx, inventory.Adjustment{SKU: a, Available: 50, ExpectedVersion: 2})
		require.ErrorIs(t, err, boom)

		avail, reserved, version := b.stock(t, a)
		require.Equal(t, []int64{7, 3, 2}, []int64{avail, reserved, version})
		res, err := b.repo.Reservation(ctx, orderID)
		require.NoError(t, err)
		require.Equal(t, inventory.StatusReserved, res.Status)
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox`), "only the reservation's event")
	})
}

// failAfter appends for real, then fails: the transaction has written its
// business rows and its outbox rows and must roll back all of them.
type failAfter struct {
	w   *outbox.Writer
	err error
}

func (f failAfter) Append(ctx context.Context, tx pgx.Tx, events ...outbox.Event) error {
	if err := f.w.Append(ctx, tx, events...); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n); err != nil || n == 0 {
		return fmt.Errorf("outbox row not visible in the transaction (n=%d): %w", n, err)
	}
	return f.err
}

func TestReserveConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("200 orders of one unit on a SKU with 100 reserve exactly 100", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		hot := b.addProduct(t, "T-HOT", 100)

		concurrently(t, 200, func(int) error {
			_, _, err := b.repo.Reserve(ctx, reserveRequest(t, newOrderID(), inventory.Item{SKU: hot, Quantity: 1}))
			return err
		})

		avail, reserved, _ := b.stock(t, hot)
		require.EqualValues(t, 0, avail)
		require.EqualValues(t, 100, reserved)
		require.Equal(t, 100, b.count(t, `SELECT count(*) FROM reservations WHERE status = 'RESERVED'`))
		require.Equal(t, 100, b.count(t, `SELECT count(*) FROM reservations WHERE status = 'REJECTED'`))
		require.Equal(t, 100, b.count(t, `SELECT coalesce(sum(i.quantity), 0) FROM reservation_items i JOIN reservations r ON r.id = i.reservation_id WHERE r.status = 'RESERVED'`))
		require.Equal(t, 100, b.count(t, `SELECT count(*) FROM outbox WHERE event_type = $1`, event.InventoryReserved))
		require.Equal(t, 100, b.count(t, `SELECT count(*) FROM outbox WHERE event_type = $1`, event.InventoryRejected))
	})

	t.Run("50 identical concurrent requests make one reservation", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 100)
		req := reserveRequest(t, orderID, inventory.Item{SKU: a, Quantity: 3})

		const n = 50
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			ids     = map[string]int{}
			created int
		)
		for range n {
			wg.Go(func() {
				res, c, err := b.repo.Reserve(ctx, req)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					ids["error: "+err.Error()]++
					return
				}
				ids[res.ID]++
				if c {
					created++
				}
			})
		}
		wg.Wait()
		require.Len(t, ids, 1, "every call returns the same reservation: %v", ids)
		require.Equal(t, 1, created)
		avail, reserved, _ := b.stock(t, a)
		require.Equal(t, []int64{97, 3}, []int64{avail, reserved})
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM reservations`))
		require.Len(t, b.events(t, orderID), 1)
	})

	t.Run("multi-item orders over the same SKUs in any request order do not deadlock", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		skus := []string{b.addProduct(t, "T-A", 1000), b.addProduct(t, "T-B", 1000), b.addProduct(t, "T-C", 1000)}

		const orders = 60
		concurrently(t, orders, func(i int) error {
			// Rotate the request order so that a naive implementation
			// would lock in opposite orders.
			items := []inventory.Item{
				{SKU: skus[i%3], Quantity: 1}, {SKU: skus[(i+1)%3], Quantity: 1}, {SKU: skus[(i+2)%3], Quantity: 1},
			}
			_, _, err := b.repo.Reserve(ctx, reserveRequest(t, newOrderID(), items...))
			return err
		})
		for _, sku := range skus {
			avail, reserved, _ := b.stock(t, sku)
			require.Equal(t, []int64{1000 - orders, orders}, []int64{avail, reserved}, sku)
		}
	})
}

// hotAtOnce returns a Contention that turns a SKU hot at its first
// collision, so that concurrent tests exercise the group commit, and its
// registry.
func hotAtOnce(t testing.TB) (*optlock.Contention, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := optlock.NewContention(event.AggregateProduct, optlock.ContentionOptions{Threshold: 0.001, MinUpdates: 1}, reg)
	require.NoError(t, err)
	return c, reg
}

func TestReserveOnAHotSKU(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, hot := range []bool{false, true} {
		t.Run(fmt.Sprintf("hot=%v", hot), func(t *testing.T) {
			t.Parallel()
			var (
				opts []postgres.Option
				reg  *prometheus.Registry
			)
			if hot {
				var c *optlock.Contention
				c, reg = hotAtOnce(t)
				opts = append(opts, postgres.WithContention(c))
			}
			b := setup(t, opts...)
			sku := b.addProduct(t, "T-HOT", 150)

			// 40 writers, 300 orders of one unit, and every tenth order sent
			// twice at once (a duplicate the idempotency guard missed).
			const writers, orders = 40, 300
			type result struct {
				orderID string
				res     inventory.Reservation
				created bool
				err     error
			}
			work := make(chan string)
			results := make(chan result, 2*orders)
			var wg sync.WaitGroup
			for range writers {
				wg.Go(func() {
					for orderID := range work {
						res, created, err := b.repo.Reserve(ctx, reserveRequest(t, orderID, inventory.Item{SKU: sku, Quantity: 1}))
						results <- result{orderID, res, created, err}
					}
				})
			}
			sent := 0
			for i := range orders {
				orderID := newOrderID()
				work <- orderID
				sent++
				if i%10 == 0 {
					work <- orderID
					sent++
				}
			}
			close(work)
			wg.Wait()
			close(results)

			byOrder := map[string][]result{}
			for r := range results {
				require.NoError(t, r.err)
				byOrder[r.orderID] = append(byOrder[r.orderID], r)
			}
			require.Len(t, byOrder, orders)
			statuses := map[inventory.Status]int{}
			for orderID, rs := range byOrder {
				created := 0
				for _, r := range rs {
					require.Equal(t, rs[0].res.ID, r.res.ID, "one reservation per order")
					require.Equal(t, rs[0].res.Status, r.res.Status, "a duplicate sees the settled status")
					if r.created {
						created++
					}
				}
				require.Equal(t, 1, created, "order %s created once", orderID)
				statuses[rs[0].res.Status]++
			}

			avail, reserved, version := b.stock(t, sku)
			require.Equal(t, map[inventory.Status]int{inventory.StatusReserved: 150, inventory.StatusRejected: 150}, statuses)
			require.Equal(t, []int64{0, 150}, []int64{avail, reserved}, "no unit lost or taken twice")
			require.EqualValues(t, 1+150, version, "one version per unit taken")
			require.Equal(t, 150, b.count(t, `SELECT count(*) FROM reservations WHERE status = 'RESERVED'`))
			require.Equal(t, orders, b.count(t, `SELECT count(*) FROM reservations`))
			require.Equal(t, orders, b.count(t, `SELECT count(*) FROM outbox WHERE aggregate_type = $1`, event.AggregateReservation),
				"one event per reservation")
			commits := b.count(t, `SELECT count(DISTINCT xmin::text) FROM reservations`)
			if hot {
				require.Positive(t, servicetest.MetricSum(t, reg, "optlock_mode_switches_total"), "the SKU turned hot")
				require.Less(t, commits, orders, "reservations of a hot SKU share transactions")
			} else {
				require.Equal(t, orders, commits, "one transaction per reservation")
			}
			t.Logf("transactions for %d reservations: %d", orders, commits)
		})
	}
}

func TestAddStockInGroups(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	sku := b.addProduct(t, "T-DELTA", 5)

	// 30 requests to take one unit each, every third sent twice at once
	// (a duplicate Redis missed): only 5 units exist.
	type result struct {
		key     string
		applied bool
		err     error
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results []result
	)
	for i := range 30 {
		key := fmt.Sprintf("req-%02d", i)
		copies := 1 + map[bool]int{true: 1}[i%3 == 0]
		for range copies {
			wg.Go(func() {
				d, err := inventory.NewStockDelta(sku, -1, "written off")
				require.NoError(t, err)
				d.RequestKey = key
				_, applied, err := b.repo.AddStock(ctx, d)
				mu.Lock()
				results = append(results, result{key, applied, err})
				mu.Unlock()
			})
		}
	}
	wg.Wait()

	appliedKeys := map[string]int{}
	outOfRange := 0
	for _, r := range results {
		switch {
		case r.applied:
			require.NoError(t, r.err)
			appliedKeys[r.key]++
		case r.err != nil:
			require.ErrorIs(t, r.err, inventory.ErrStockOutOfRange)
			outOfRange++
		}
	}
	require.Len(t, appliedKeys, 5, "exactly the units there were")
	for key, n := range appliedKeys {
		require.Equal(t, 1, n, "%s applied once", key)
	}
	require.Positive(t, outOfRange)
	avail, _, version := b.stock(t, sku)
	require.EqualValues(t, 0, avail)
	require.EqualValues(t, 1+5, version, "one version per applied delta")
	require.Equal(t, 5, b.count(t, `SELECT count(*) FROM stock_deltas WHERE sku = $1`, sku))
	require.Len(t, b.events(t, sku), 5)

	// A key applied before changes nothing, even with stock back.
	d, err := inventory.NewStockDelta(sku, 10, "received")
	require.NoError(t, err)
	_, applied, err := b.repo.AddStock(ctx, d)
	require.NoError(t, err)
	require.True(t, applied, "no key: nothing to check")
	var key string
	for k := range appliedKeys {
		key = k
	}
	d, err = inventory.NewStockDelta(sku, -1, "written off")
	require.NoError(t, err)
	d.RequestKey = key
	p, applied, err := b.repo.AddStock(ctx, d)
	require.NoError(t, err)
	require.False(t, applied)
	require.EqualValues(t, 10, p.Available)

	d.SKU = "T-NOPE"
	_, _, err = b.repo.AddStock(ctx, d)
	require.ErrorIs(t, err, inventory.ErrNotFound)
}

func TestRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("returns exactly what was reserved, once", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 10)
		c := b.addProduct(t, "T-C", 10)
		reserved := b.reserve(t, orderID, inventory.Item{SKU: a, Quantity: 4}, inventory.Item{SKU: c, Quantity: 1})

		res, released, err := b.repo.Release(ctx, orderID)
		require.NoError(t, err)
		require.True(t, released)
		require.Equal(t, inventory.StatusReleased, res.Status)
		require.Equal(t, reserved.ID, res.ID)
		require.Equal(t, reserved.Items, res.Items)
		require.EqualValues(t, 2, res.Version)
		for _, sku := range []string{a, c} {
			avail, held, _ := b.stock(t, sku)
			require.Equal(t, []int64{10, 0}, []int64{avail, held}, sku)
		}

		again, released, err := b.repo.Release(ctx, orderID)
		require.NoError(t, err)
		require.False(t, released)
		require.Equal(t, inventory.StatusReleased, again.Status)
		avail, _, _ := b.stock(t, a)
		require.EqualValues(t, 10, avail, "a second release returns nothing")

		var payload inventoryv1.StockReleased
		b.lastEvent(t, orderID, 2, event.InventoryReleased, 2, &payload)
		require.Len(t, payload.GetItems(), 2)
	})

	t.Run("returns the stock once when called concurrently", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 10)
		b.reserve(t, orderID, inventory.Item{SKU: a, Quantity: 7})

		var releases atomic.Int32
		concurrently(t, 30, func(int) error {
			res, released, err := b.repo.Release(ctx, orderID)
			if released {
				releases.Add(1)
			}
			if err == nil && res.Status != inventory.StatusReleased {
				err = fmt.Errorf("status %s", res.Status)
			}
			return err
		})
		require.EqualValues(t, 1, releases.Load())
		avail, reserved, _ := b.stock(t, a)
		require.Equal(t, []int64{10, 0}, []int64{avail, reserved})
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE event_type = $1`, event.InventoryReleased))
	})

	t.Run("leaves a rejected reservation and the stock alone", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 1)
		b.reserve(t, orderID, inventory.Item{SKU: a, Quantity: 2})

		res, released, err := b.repo.Release(ctx, orderID)
		require.NoError(t, err)
		require.False(t, released)
		require.Equal(t, inventory.StatusRejected, res.Status)
		avail, reserved, _ := b.stock(t, a)
		require.Equal(t, []int64{1, 0}, []int64{avail, reserved})
		require.Len(t, b.events(t, orderID), 1, "only the rejection")
	})

	t.Run("records a tombstone for an order without a reservation, once", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 10)

		res, released, err := b.repo.Release(ctx, orderID)
		require.NoError(t, err)
		require.True(t, released)
		require.True(t, res.Tombstone())
		require.Equal(t, inventory.StatusReleased, res.Status)
		require.Equal(t, orderID, res.OrderID)
		require.EqualValues(t, 1, res.Version)

		again, released, err := b.repo.Release(ctx, orderID)
		require.NoError(t, err)
		require.False(t, released)
		require.Equal(t, res.ID, again.ID)

		// A reservation that comes later finds the tombstone and takes nothing.
		late, created, err := b.repo.Reserve(ctx, reserveRequest(t, orderID, inventory.Item{SKU: a, Quantity: 3}))
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, res.ID, late.ID)
		require.True(t, late.Tombstone())
		avail, reserved, version := b.stock(t, a)
		require.Equal(t, []int64{10, 0, 1}, []int64{avail, reserved, version})

		var payload inventoryv1.StockReleased
		b.lastEvent(t, orderID, 1, event.InventoryReleased, 1, &payload)
		require.Equal(t, res.ID, payload.GetReservationId())
		require.Empty(t, payload.GetItems(), "nothing moved")
	})
}

// TestReleaseRacingReserve reproduces a saga that compensates a
// ReserveStock whose outcome it never learned: the Release runs while the
// Reserve is in flight, its reservation row inserted but not committed. To
// hold the Reserve there, another transaction locks the product row the
// Reserve must update; the test waits (on pg_stat_activity) until the
// Reserve, and then the Release, are blocked before it lets go.
func TestReleaseRacingReserve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("a Reserve that commits is released, and the stock comes back", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 10)
		race := b.startReserveBlockedOnProduct(t, b.repo, a, reserveRequest(t, orderID, inventory.Item{SKU: a, Quantity: 4}))

		release := b.startRelease(t, orderID)
		race.unblock(t)

		reserved := race.wait(t)
		require.NoError(t, reserved.err)
		require.True(t, reserved.created)
		require.Equal(t, inventory.StatusReserved, reserved.res.Status)
		released := release.wait(t)
		require.NoError(t, released.err)
		require.True(t, released.released)
		require.Equal(t, inventory.StatusReleased, released.res.Status)
		require.Equal(t, reserved.res.ID, released.res.ID, "the reservation itself, not a tombstone")
		require.Equal(t, reserved.res.Items, released.res.Items)

		avail, held, _ := b.stock(t, a)
		require.Equal(t, []int64{10, 0}, []int64{avail, held}, "the stock is untouched in the end")
		require.Equal(t, []string{event.InventoryReserved, event.InventoryReleased}, eventTypes(b.events(t, orderID)))

		later, created, err := b.repo.Reserve(ctx, reserveRequest(t, orderID, inventory.Item{SKU: a, Quantity: 4}))
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, inventory.StatusReleased, later.Status)
		avail, held, _ = b.stock(t, a)
		require.Equal(t, []int64{10, 0}, []int64{avail, held})
	})

	t.Run("a Reserve that rolls back leaves the tombstone, and a later Reserve takes nothing", func(t *testing.T) {
		t.Parallel()
		b, a, orderID := setupOrder(t, 10)
		failing, boom := b.failing(t)
		race := b.startReserveBlockedOnProduct(t, failing, a, reserveRequest(t, orderID, inventory.Item{SKU: a, Quantity: 4}))

		release := b.startRelease(t, orderID)
		race.unblock(t)

		require.ErrorIs(t, race.wait(t).err, boom)
		released := release.wait(t)
		require.NoError(t, released.err)
		require.True(t, released.released)
		require.True(t, released.res.Tombstone())

		later, created, err := b.repo.Reserve(ctx, reserveRequest(t, orderID, inventory.Item{SKU: a, Quantity: 4}))
		require.NoError(t, err)
		require.False(t, created)
		require.True(t, later.Tombstone())
		avail, held, version := b.stock(t, a)
		require.Equal(t, []int64{10, 0, 1}, []int64{avail, held, version})
		require.Equal(t, []string{event.InventoryReleased}, eventTypes(b.events(t, orderID)))
	})

	t.Run("many orders reserved and released at once all end released with every unit back", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		a, c := b.addProduct(t, "T-A", 50), b.addProduct(t, "T-C", 50)
		const orders = 40
		ids, reqs := make([]string, orders), make([]inventory.ReserveRequest, orders)
		for i := range ids {
			ids[i] = newOrderID()
			reqs[i] = reserveRequest(t, ids[i], inventory.Item{SKU: a, Quantity: 2}, inventory.Item{SKU: c, Quantity: 1})
		}
		concurrently(t, orders, func(i int) error {
			_, _, err := b.repo.Reserve(ctx, reqs[i])
			return err
		}, func(i int) error {
			res, _, err := b.repo.Release(ctx, ids[i])
			if err == nil && res.Status != inventory.StatusReleased {
				err = fmt.Errorf("release of %s: status %s", ids[i], res.Status)
			}
			return err
		})
		// Whichever ran first, the release is final: nothing stays reserved.
		for _, sku := range []string{a, c} {
			avail, held, _ := b.stock(t, sku)
			require.Equal(t, []int64{50, 0}, []int64{avail, held}, sku)
		}
		require.Equal(t, orders, b.count(t, `SELECT count(*) FROM reservations WHERE status = 'RELEASED'`))
		require.Equal(t, orders, b.count(t, `SELECT count(*) FROM outbox WHERE event_type = $1`, event.InventoryReleased))
		// Every order released after it was reserved has both events; one
		// released first has only the tombstone's.
		require.Equal(t, b.count(t, `SELECT count(*) FROM outbox WHERE event_type = $1`, event.InventoryReserved),
			b.count(t, `SELECT count(DISTINCT reservation_id) FROM reservation_items`))
	})
}

// blockedReserve is a Reserve held inside its transaction by a row lock.
type blockedReserve struct {
	locker pgx.Tx
	done   chan reserveResult
}

type reserveResult struct {
	res     inventory.Reservation
	created bool
	err     error
}

type releaseResult struct {
	res      inventory.Reservation
	released bool
	err      error
}

// startReserveBlockedOnProduct locks sku's row in a transaction of its own,
// starts repo.Reserve(req) and returns once that Reserve has inserted its
// reservation row and waits for the product lock.
func (b testBundle) startReserveBlockedOnProduct(t *testing.T, repo *postgres.Repository, sku string, req inventory.ReserveRequest) *blockedReserve {
	t.Helper()
	ctx := context.Background()
	locker, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = locker.Rollback(ctx) })
	// NO KEY UPDATE, as the Reserve's stock UPDATE takes: the foreign key
	// check of its reservation lines (KEY SHARE) still passes, so the
	// Reserve blocks after writing its reservation, on the stock.
	_, err = locker.Exec(ctx, `SELECT 1 FROM products WHERE sku = $1 FOR NO KEY UPDATE`, sku)
	require.NoError(t, err)

	br := &blockedReserve{locker: locker, done: make(chan reserveResult, 1)}
	go func() {
		res, created, err := repo.Reserve(ctx, req)
		br.done <- reserveResult{res, created, err}
	}()
	pgtest.WaitBlocked(t, b.pool, "TakeStock")
	return br
}

// unblock commits the lock holder, letting the Reserve go on.
func (br *blockedReserve) unblock(t *testing.T) {
	t.Helper()
	require.NoError(t, br.locker.Commit(context.Background()))
}

func (br *blockedReserve) wait(t *testing.T) reserveResult {
	t.Helper()
	select {
	case r := <-br.done:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("Reserve did not finish")
		return reserveResult{}
	}
}

type pendingRelease chan releaseResult

// startRelease starts Release(orderID) and returns once it waits for the
// in-flight Reserve's uncommitted reservation (on the unique index).
func (b testBundle) startRelease(t *testing.T, orderID string) pendingRelease {
	t.Helper()
	done := make(pendingRelease, 1)
	go func() {
		res, released, err := b.repo.Release(context.Background(), orderID)
		done <- releaseResult{res, released, err}
	}()
	pgtest.WaitBlocked(t, b.pool, "CreateReleasedReservation")
	return done
}

func (p pendingRelease) wait(t *testing.T) releaseResult {
	t.Helper()
	select {
	case r := <-p:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("Release did not finish")
		return releaseResult{}
	}
}

func eventTypes(rows []outboxRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.EventType
	}
	return out
}

func TestAdjustStock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("sets available at the expected version and records the event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		a := b.addProduct(t, "T-A", 10)

		p, err := b.repo.AdjustStock(ctx, inventory.Adjustment{SKU: a, Available: 42, ExpectedVersion: 1, Reason: "recount"})
		require.NoError(t, err)
		require.EqualValues(t, 42, p.Available)
		require.EqualValues(t, 2, p.Version)

		var payload inventoryv1.StockAdjusted
		ev := b.lastEvent(t, a, 1, event.InventoryStockAdjusted, 2, &payload)
		require.Equal(t, event.AggregateProduct, ev.AggregateType)
		require.Equal(t, "recount", payload.GetReason())
		require.EqualValues(t, 42, payload.GetAvailable())
	})

	t.Run("rejects a stale version and changes nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		a := b.addProduct(t, "T-A", 10)
		// A reservation moves the stock, so version 1 is stale afterwards.
		b.reserve(t, newOrderID(), inventory.Item{SKU: a, Quantity: 1})

		_, err := b.repo.AdjustStock(ctx, inventory.Adjustment{SKU: a, Available: 42, ExpectedVersion: 1})
		require.ErrorIs(t, err, optlock.ErrConflict)
		avail, _, version := b.stock(t, a)
		require.Equal(t, []int64{9, 2}, []int64{avail, version})
		require.Empty(t, b.events(t, a))
	})

	t.Run("fails for an unknown SKU", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.repo.AdjustStock(ctx, inventory.Adjustment{SKU: "T-NOPE", Available: 1, ExpectedVersion: 1})
		require.ErrorIs(t, err, inventory.ErrNotFound)
		require.NotErrorIs(t, err, optlock.ErrConflict)
	})
}

func TestCatalog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)

	t.Run("the migration seeds the demo catalog", func(t *testing.T) {
		all, err := b.repo.ListProducts(ctx, "", 100)
		require.NoError(t, err)
		require.Len(t, all, 9)
		require.Equal(t, "SKU-CABLE", all[0].SKU, "SKU order")
		p, err := b.repo.Product(ctx, "SKU-LIMITED")
		require.NoError(t, err)
		require.Equal(t, inventory.Money{Currency: "USD", Minor: 1500}, p.UnitPrice)
		require.EqualValues(t, 5, p.Available)
	})

	t.Run("pages by SKU", func(t *testing.T) {
		page, err := b.repo.ListProducts(ctx, "SKU-LAPTOP", 2)
		require.NoError(t, err)
		require.Equal(t, []string{"SKU-LIMITED", "SKU-MONITOR"}, []string{page[0].SKU, page[1].SKU})
	})

	t.Run("omits unknown SKUs", func(t *testing.T) {
		ps, err := b.repo.ProductsBySKU(ctx, []string{"SKU-MOUSE", "SKU-NOPE"})
		require.NoError(t, err)
		require.Len(t, ps, 1)
		_, err = b.repo.Product(ctx, "SKU-NOPE")
		require.ErrorIs(t, err, inventory.ErrNotFound)
	})
}

// A group of a hot SKU's reservations takes the whole group's stock in one
// update when the SKU covers it, and otherwise goes reservation by
// reservation in order id order, rejecting those the SKU cannot cover, as
// each alone would be; an order reserved before is a duplicate. Either
// way the group is one transaction, with one product version and one
// event per reservation.
func TestReserveGroup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	// Order ids in the order the group takes them (UUIDv7: increasing).
	orders := func(n int) []string {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = newOrderID()
		}
		slices.Sort(ids)
		return ids
	}
	group := func(sku string, ids []string, quantities ...int32) []inventory.ReserveRequest {
		reqs := make([]inventory.ReserveRequest, len(ids))
		for i, id := range ids {
			reqs[i] = reserveRequest(t, id, inventory.Item{SKU: sku, Quantity: quantities[i]})
		}
		// Handed over in another order than the one they are taken in.
		slices.Reverse(reqs)
		return reqs
	}
	statuses := func(out []postgres.ReserveOutcome) []inventory.Status {
		var s []inventory.Status
		for _, o := range slices.Backward(out) {
			require.NoError(t, o.Err)
			s = append(s, o.Res.Status)
		}
		return s
	}
	oneTransaction := func(ids []string) {
		t.Helper()
		require.Equal(t, 1, b.count(t, `SELECT count(DISTINCT xmin::text) FROM reservations WHERE order_id = ANY($1::uuid[])`, ids))
		require.Equal(t, len(ids), b.count(t, `SELECT count(*) FROM outbox WHERE aggregate_type = $1 AND aggregate_id = ANY($2::text[])`,
			event.AggregateReservation, ids), "one event per reservation")
	}

	t.Run("covered", func(t *testing.T) {
		sku := b.addProduct(t, "T-GROUP-COVERED", 100)
		ids := orders(5)
		out, err := b.repo.ReserveGroup(ctx, group(sku, ids, 1, 2, 3, 4, 5))
		require.NoError(t, err)
		require.Equal(t, slices.Repeat([]inventory.Status{inventory.StatusReserved}, 5), statuses(out))
		avail, reserved, version := b.stock(t, sku)
		require.Equal(t, []int64{85, 15, 1 + 5}, []int64{avail, reserved, version})
		oneTransaction(ids)
	})

	t.Run("short", func(t *testing.T) {
		sku := b.addProduct(t, "T-GROUP-SHORT", 6)
		before := b.reserve(t, newOrderID(), inventory.Item{SKU: sku, Quantity: 1})
		ids := orders(4)
		reqs := append(group(sku, ids, 2, 4, 3, 1), reserveRequest(t, before.OrderID, inventory.Item{SKU: sku, Quantity: 1}))
		out, err := b.repo.ReserveGroup(ctx, reqs)
		require.NoError(t, err)
		dup := out[len(out)-1]
		require.NoError(t, dup.Err)
		require.False(t, dup.Created, "the order had its reservation")
		require.Equal(t, before.ID, dup.Res.ID)
		require.Equal(t, inventory.StatusReserved, dup.Res.Status)
		require.Equal(t, []inventory.Status{
			inventory.StatusReserved, inventory.StatusRejected, inventory.StatusReserved, inventory.StatusRejected,
		}, statuses(out[:len(out)-1]), "5 left: 2 fit, 4 does not, 3 fits, 1 does not")
		for _, o := range out[:len(out)-1] {
			require.True(t, o.Created)
		}
		avail, reserved, version := b.stock(t, sku)
		require.Equal(t, []int64{0, 6, 1 + 1 + 2}, []int64{avail, reserved, version}, "one version per reservation taken")
		oneTransaction(ids)
	})
}
