package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/goodgo/goodgo/platform/outbox"
	pgplatform "github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
	"github.com/goodgo/goodgo/services/inventory/internal/postgres/inventorydb"
)

// Reserve creates the reservation of req.OrderID in one transaction: every
// item is taken from available stock (status RESERVED, event
// inventory.reserved.v1) or none is (status REJECTED "insufficient_stock",
// event inventory.rejected.v1). created is false when the order already had
// a reservation: that one is returned unchanged and nothing is written, so a
// retried or duplicated request never reserves twice, and a request that
// comes after the order was released (a tombstone, see Release) reserves
// nothing. An unknown SKU fails with an error wrapping inventory.ErrNotFound
// (a *inventory.NotFoundError whose Value is the SKU) and nothing is
// written.
//
// How concurrency is handled:
//   - The reservation row is inserted first, ON CONFLICT (order_id) DO
//     NOTHING. A concurrent duplicate blocks on the unique index until the
//     first transaction ends, then finds its row: one reservation per order.
//   - Stock is taken with one conditional UPDATE per SKU, in SKU order (the
//     order every writer locks products in, so no deadlock), inside a
//     savepoint when there are several items. The row lock serializes writers of a hot SKU and the
//     condition is re-checked on the newest row, so available never goes
//     negative. If any SKU is short, the savepoint is rolled back and the
//     reservation is marked REJECTED instead.
//
// A hot SKU (see WithContention) changes how, not what: while the
// reservations of one SKU collide, single-item reservations of it queue
// in this process and commit together (reserveBatch).
func (r *Repository) Reserve(ctx context.Context, req inventory.ReserveRequest) (res inventory.Reservation, created bool, err error) {
	if r.contention == nil || len(req.Items) != 1 {
		return r.reserveAlone(ctx, req)
	}
	ticket := r.contention.Start(req.Items[0].SKU)
	defer ticket.Done()
	ticket.Observe(false) // nothing here conflicts: overlaps are the signal
	if !ticket.Pessimistic {
		return r.reserveAlone(ctx, req)
	}
	call := &reserveCall{req: req}
	if call.orderID, err = uuid.Parse(req.OrderID); err != nil {
		return inventory.Reservation{}, false, fmt.Errorf("reserve: order id: %w", err)
	}
	if call.id, err = newID(); err != nil {
		return inventory.Reservation{}, false, err
	}
	if err := r.hotReserves.do(ctx, req.Items[0].SKU, call, r.reserveBatch); err != nil {
		return inventory.Reservation{}, false, fmt.Errorf("reserve stock for order %s: %w", req.OrderID, err)
	}
	return call.res, call.created, call.err
}

// reserveCall is one single-item Reserve in a batch, with its outcome.
type reserveCall struct {
	req         inventory.ReserveRequest
	orderID, id uuid.UUID

	res       inventory.Reservation
	created   bool
	duplicate bool // the order already had a reservation
	err       error
}

// reserveBatch reserves single-item requests of one SKU in one
// transaction, with Reserve's outcome for each, in three round trips
// whatever the group's size: every reservation in one insert (in order id
// order, so two batches cannot wait on each other's unique index
// entries), the group's stock in one conditional UPDATE of the product
// (the lock order, as everywhere: reservations first, then the product),
// and the events with the commit. Only when the SKU cannot cover the
// whole group is stock taken reservation by reservation, in order id
// order, and the ones it cannot cover are REJECTED, as each alone would
// be. If anything fails, the transaction is rolled back and every call
// runs alone, so that one bad request (or a deadlock victim) fails no
// other.
func (r *Repository) reserveBatch(ctx context.Context, calls []*reserveCall) {
	slices.SortFunc(calls, func(a, b *reserveCall) int { return bytes.Compare(a.orderID[:], b.orderID[:]) })
	err := pgplatform.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		q := r.q.WithTx(tx)
		if err := createReservations(ctx, q, calls); err != nil {
			return err
		}
		events, err := takeStockForBatch(ctx, tx, calls)
		if err != nil {
			return err
		}
		// Duplicates last: one may be of an order reserved earlier in this
		// very batch, whose status is only now settled.
		for _, c := range calls {
			if c.duplicate {
				if c.res, err = loadReservation(ctx, q, c.orderID); err != nil {
					return err
				}
			}
		}
		if len(events) == 0 {
			return nil
		}
		return r.events.Append(ctx, tx, events...)
	})
	if err == nil {
		return
	}
	for _, c := range calls {
		c.res, c.created, c.err = r.reserveAlone(ctx, c.req)
	}
}

// createReservations inserts the reservations of calls (sorted by order id)
// in one statement; a call whose order had one already is a duplicate.
func createReservations(ctx context.Context, q *inventorydb.Queries, calls []*reserveCall) error {
	p := inventorydb.CreateReservationsParams{
		Ids: make([]uuid.UUID, len(calls)), OrderIds: make([]uuid.UUID, len(calls)),
		Skus: make([]string, len(calls)), Quantities: make([]int32, len(calls)),
	}
	for i, c := range calls {
		it := c.req.Items[0]
		p.Ids[i], p.OrderIds[i], p.Skus[i], p.Quantities[i] = c.id, c.orderID, it.SKU, it.Quantity
	}
	rows, err := q.CreateReservations(ctx, p)
	if err != nil {
		return fmt.Errorf("create reservations: %w", err)
	}
	created := make(map[uuid.UUID]inventorydb.CreateReservationsRow, len(rows))
	for _, row := range rows {
		created[row.ID] = row
	}
	for _, c := range calls {
		row, ok := created[c.id]
		c.created, c.duplicate = ok, !ok
		if ok {
			c.res = inventory.Reservation{
				ID: row.ID.String(), OrderID: row.OrderID.String(), Status: inventory.StatusReserved,
				Items: c.req.Items, Version: row.Version, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt,
			}
		}
	}
	return nil
}

// takeStockForBatch takes the stock of the reservations calls created, all
// of one SKU: the whole group's at once, or, if the SKU cannot cover it,
// one reservation after the other, rejecting those it cannot cover. It
// returns each created reservation's event.
func takeStockForBatch(ctx context.Context, tx pgx.Tx, calls []*reserveCall) ([]outbox.Event, error) {
	q := inventorydb.New(tx)
	var created []*reserveCall
	var total int64
	for _, c := range calls {
		if c.created {
			created = append(created, c)
			total += int64(c.req.Items[0].Quantity)
		}
	}
	if len(created) == 0 {
		return nil, nil
	}
	sku := created[0].req.Items[0].SKU
	n, err := q.TakeStockFor(ctx, inventorydb.TakeStockForParams{SKU: sku, Quantity: total, Reservations: int64(len(created))})
	if err != nil {
		return nil, fmt.Errorf("take %d of %s for %d reservations: %w", total, sku, len(created), err)
	}
	events := make([]outbox.Event, 0, len(created))
	for _, c := range created {
		if n == 0 { // short for the group: each on its own, as alone
			taken, err := takeStock(ctx, tx, c.req.Items)
			if err != nil {
				return nil, err
			}
			if !taken {
				rejected, err := q.RejectReservation(ctx, inventorydb.RejectReservationParams{
					ID: c.id, RejectReason: inventory.RejectInsufficientStock,
				})
				if err != nil {
					return nil, fmt.Errorf("reject reservation: %w", err)
				}
				c.res.Status, c.res.RejectReason, c.res.Version = inventory.StatusRejected, rejected.RejectReason, rejected.Version
			}
		}
		events = append(events, reservationEvent(c.res))
	}
	return events, nil
}

// reserveAlone is Reserve in a transaction of its own.
func (r *Repository) reserveAlone(ctx context.Context, req inventory.ReserveRequest) (res inventory.Reservation, created bool, err error) {
	orderID, err := uuid.Parse(req.OrderID)
	if err != nil {
		return inventory.Reservation{}, false, fmt.Errorf("reserve: order id: %w", err)
	}
	id, err := newID()
	if err != nil {
		return inventory.Reservation{}, false, err
	}
	skus := make([]string, len(req.Items))
	quantities := make([]int32, len(req.Items))
	for i, it := range req.Items {
		skus[i], quantities[i] = it.SKU, it.Quantity
	}

	err = pgplatform.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		q := r.q.WithTx(tx)
		row, err := q.CreateReservation(ctx, inventorydb.CreateReservationParams{
			ID: id, OrderID: orderID, Skus: skus, Quantities: quantities,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			res, err = loadReservation(ctx, q, orderID)
			return err
		}
		if err != nil {
			return fmt.Errorf("create reservation: %w", err)
		}
		created = true
		res = inventory.Reservation{
			ID: row.ID.String(), OrderID: row.OrderID.String(), Status: inventory.StatusReserved,
			Items: req.Items, Version: row.Version, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt,
		}

		taken, err := takeStock(ctx, tx, req.Items)
		if err != nil {
			return err
		}
		if !taken {
			rejected, err := q.RejectReservation(ctx, inventorydb.RejectReservationParams{
				ID: row.ID, RejectReason: inventory.RejectInsufficientStock,
			})
			if err != nil {
				return fmt.Errorf("reject reservation: %w", err)
			}
			res.Status, res.RejectReason, res.Version = inventory.StatusRejected, rejected.RejectReason, rejected.Version
		}
		return r.events.Append(ctx, tx, reservationEvent(res))
	})
	if isForeignKeyViolation(err) {
		return inventory.Reservation{}, false, r.unknownSKU(ctx, skus)
	}
	if err != nil {
		return inventory.Reservation{}, false, fmt.Errorf("reserve stock for order %s: %w", req.OrderID, err)
	}
	return res, created, nil
}

// takeStock takes every item or none. It reports false, having changed
// nothing, when some SKU is short.
//
// One item needs no savepoint: its conditional UPDATE either takes the
// stock or changes nothing. That matters on a hot SKU, whose row lock is
// held until commit: one round trip less under the lock. Several items are
// taken inside a savepoint, rolled back if a later one is short.
func takeStock(ctx context.Context, tx pgx.Tx, items []inventory.Item) (bool, error) {
	if len(items) == 1 {
		it := items[0]
		n, err := inventorydb.New(tx).TakeStock(ctx, inventorydb.TakeStockParams{SKU: it.SKU, Quantity: int64(it.Quantity)})
		if err != nil {
			return false, fmt.Errorf("take %d of %s: %w", it.Quantity, it.SKU, err)
		}
		return n == 1, nil
	}
	sp, err := tx.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("savepoint: %w", err)
	}
	q := inventorydb.New(sp)
	for _, it := range items { // items are in SKU order: the lock order
		n, err := q.TakeStock(ctx, inventorydb.TakeStockParams{SKU: it.SKU, Quantity: int64(it.Quantity)})
		if err != nil {
			return false, fmt.Errorf("take %d of %s: %w", it.Quantity, it.SKU, err)
		}
		if n == 0 {
			// Undo the items already taken; the row locks stay until the
			// transaction ends, which is harmless and short.
			if err := sp.Rollback(ctx); err != nil {
				return false, fmt.Errorf("rollback to savepoint: %w", err)
			}
			return false, nil
		}
	}
	if err := sp.Commit(ctx); err != nil {
		return false, fmt.Errorf("release savepoint: %w", err)
	}
	return true, nil
}

// unknownSKU names the first SKU of skus that is not in the catalog, after a
// foreign-key violation rolled the reservation back.
func (r *Repository) unknownSKU(ctx context.Context, skus []string) error {
	found, err := r.q.GetProductsBySKU(ctx, skus)
	if err != nil {
		return fmt.Errorf("find unknown sku: %w", err)
	}
	for _, sku := range skus {
		if !slices.ContainsFunc(found, func(p inventorydb.Product) bool { return p.SKU == sku }) {
			return inventory.NotFound("sku", sku)
		}
	}
	// Every SKU exists now, so the violation was not about them.
	return errors.New("reserve: foreign key violation with every sku present")
}

// Release gives back what the reservation of orderID holds and marks it
// RELEASED, appending inventory.released.v1, in one transaction. A
// reservation that is already RELEASED or was REJECTED is returned unchanged
// with released false and nothing written.
//
// An order without a reservation gets a tombstone: a RELEASED reservation
// without items at version 1, with an inventory.released.v1 event without
// items (nothing moved, but the order's consumers learn that its stock is
// released for good); released is true. A ReserveStock arriving later finds
// the order's one reservation taken and reserves nothing, so a compensation
// that overtakes the step it compensates still wins (compensations are
// absorbing).
//
// How concurrency is handled:
//   - The status change is a conditional UPDATE (RESERVED → RELEASED) that
//     locks the reservation row: of two concurrent releases, the second
//     waits, then matches nothing and returns the released reservation, so
//     stock is returned exactly once. Products are then updated in SKU
//     order, the lock order Reserve follows.
//   - When the UPDATE matches nothing and no reservation is visible, the
//     tombstone is inserted ON CONFLICT (order_id) DO NOTHING. A Reserve of
//     the same order that is still in flight (its row inserted, not yet
//     committed, invisible to the UPDATE) holds the unique index entry: the
//     insert waits for it. If the Reserve commits, the insert does nothing
//     and the UPDATE runs again, now seeing the committed reservation, and
//     releases it normally; if it rolls back, the tombstone is inserted.
//     The insert holds no product lock while it waits, so it cannot
//     deadlock with the Reserve.
func (r *Repository) Release(ctx context.Context, orderID string) (res inventory.Reservation, released bool, err error) {
	oid, err := uuid.Parse(orderID)
	if err != nil {
		return inventory.Reservation{}, false, fmt.Errorf("release: order id: %w", err)
	}
	tombstoneID, err := newID()
	if err != nil {
		return inventory.Reservation{}, false, err
	}
	err = pgplatform.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		q := r.q.WithTx(tx)
		row, err := q.ReleaseReservation(ctx, oid)
		if errors.Is(err, pgx.ErrNoRows) {
			// Not RESERVED: already released, rejected, or no reservation
			// (yet). The tombstone insert tells the last case apart and
			// settles the race with an in-flight Reserve.
			stone, ierr := q.CreateReleasedReservation(ctx, inventorydb.CreateReleasedReservationParams{ID: tombstoneID, OrderID: oid})
			switch {
			case ierr == nil:
				released = true
				if res, err = reservationFromDB(ctx, q, stone); err != nil {
					return err
				}
				return r.events.Append(ctx, tx, reservationEvent(res))
			case !errors.Is(ierr, pgx.ErrNoRows):
				return fmt.Errorf("create released reservation: %w", ierr)
			}
			// The order has a reservation, possibly committed by a Reserve
			// the insert just waited for: this statement's snapshot sees it.
			row, err = q.ReleaseReservation(ctx, oid)
			if errors.Is(err, pgx.ErrNoRows) {
				res, err = loadReservation(ctx, q, oid)
				return err
			}
		}
		if err != nil {
			return fmt.Errorf("release reservation: %w", err)
		}
		released = true
		if res, err = reservationFromDB(ctx, q, row); err != nil {
			return err
		}
		for _, it := range res.Items { // SKU order: the lock order
			n, err := q.ReturnStock(ctx, inventorydb.ReturnStockParams{SKU: it.SKU, Quantity: int64(it.Quantity)})
			if err != nil {
				return fmt.Errorf("return %d of %s: %w", it.Quantity, it.SKU, err)
			}
			if n != 1 {
				// The product holds less reserved stock than this
				// reservation: bookkeeping is broken. Change nothing.
				return fmt.Errorf("return %d of %s: product holds less reserved stock", it.Quantity, it.SKU)
			}
		}
		return r.events.Append(ctx, tx, reservationEvent(res))
	})
	if err != nil {
		return inventory.Reservation{}, false, fmt.Errorf("release stock of order %s: %w", orderID, err)
	}
	return res, released, nil
}

// Reservation returns the reservation of orderID, or an error wrapping
// inventory.ErrNotFound.
func (r *Repository) Reservation(ctx context.Context, orderID string) (inventory.Reservation, error) {
	oid, err := uuid.Parse(orderID)
	if err != nil {
		return inventory.Reservation{}, fmt.Errorf("reservation: order id: %w", err)
	}
	return loadReservation(ctx, r.q, oid)
}

// loadReservation reads a reservation with its items.
func loadReservation(ctx context.Context, q *inventorydb.Queries, orderID uuid.UUID) (inventory.Reservation, error) {
	row, err := q.GetReservationByOrder(ctx, orderID)
	if errors.Is(err, pgx.ErrNoRows) {
		return inventory.Reservation{}, inventory.NotFound("order_id", orderID.String())
	}
	if err != nil {
		return inventory.Reservation{}, fmt.Errorf("get reservation: %w", err)
	}
	return reservationFromDB(ctx, q, row)
}

func reservationFromDB(ctx context.Context, q *inventorydb.Queries, row inventorydb.Reservation) (inventory.Reservation, error) {
	status, err := inventory.ParseStatus(row.Status)
	if err != nil {
		return inventory.Reservation{}, fmt.Errorf("stored reservation %s: %w", row.ID, err)
	}
	lines, err := q.ListReservationItems(ctx, row.ID)
	if err != nil {
		return inventory.Reservation{}, fmt.Errorf("list reservation items: %w", err)
	}
	items := make([]inventory.Item, len(lines))
	for i, l := range lines {
		items[i] = inventory.Item{SKU: l.SKU, Quantity: l.Quantity}
	}
	return inventory.Reservation{
		ID: row.ID.String(), OrderID: row.OrderID.String(), Status: status, Items: items,
		RejectReason: row.RejectReason, Version: row.Version, CreatedAt: row.CreatedAt, UpdatedAt: row.UpdatedAt,
	}, nil
}
