package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	pgplatform "github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
	"github.com/goodgo/goodgo/services/inventory/internal/postgres/inventorydb"
)

// AddStockAt applies d to the product read at version, whose available
// units were read as available: the optimistic path of an AdjustStock by
// delta (d.Apply checked in Go on the read, then a version-checked UPDATE),
// and the only path when the client presented a version. It appends
// inventory.stock_adjusted.v1 in the same transaction. It returns the
// product after the change and applied true; an error wrapping
// optlock.ErrConflict (a *optlock.ConflictError) when the version has moved
// on; or, when a delta with d.RequestKey was applied before, the product
// as it is now and applied false, having changed nothing.
func (r *Repository) AddStockAt(ctx context.Context, d inventory.StockDelta, version, available int64) (p inventory.Product, applied bool, err error) {
	after, err := d.Apply(available)
	if err != nil {
		return inventory.Product{}, false, err
	}
	err = pgplatform.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		q := r.q.WithTx(tx)
		if applied, err = recordDelta(ctx, q, d); err != nil || !applied {
			if err == nil {
				p, err = getProduct(ctx, q, d.SKU)
			}
			return err
		}
		row, err := q.SetAvailable(ctx, inventorydb.SetAvailableParams{SKU: d.SKU, Available: after, Version: version})
		if errors.Is(err, pgx.ErrNoRows) {
			current, err := getProduct(ctx, q, d.SKU)
			if err != nil {
				return err
			}
			return fmt.Errorf("add stock: %w", &optlock.ConflictError{
				Aggregate: event.AggregateProduct, ID: d.SKU, Presented: version, Current: current.Version,
			})
		}
		if err != nil {
			return fmt.Errorf("set available of %s: %w", d.SKU, err)
		}
		if p, err = productFromDB(row); err != nil {
			return err
		}
		return r.events.Append(ctx, tx, stockAdjusted(p, d.Reason))
	})
	if isForeignKeyViolation(err) {
		return inventory.Product{}, false, inventory.NotFound("sku", d.SKU)
	}
	if err != nil {
		return inventory.Product{}, false, err
	}
	return p, applied, nil
}

// AddStock applies d whatever the product's version, under its row lock
// (the pessimistic path of an AdjustStock by delta without a client's
// version: it cannot conflict), and appends inventory.stock_adjusted.v1 in
// the same transaction. It returns the product after the change and
// applied true; an error wrapping inventory.ErrNotFound or
// inventory.ErrStockOutOfRange; or, when a delta with d.RequestKey was
// applied before, the product as it is now and applied false, having
// changed nothing.
//
// The deltas of one SKU queue in this process and commit in groups
// (groupCommit): one transaction locks the row, checks every delta in
// turn against the running total, and writes them with one UPDATE, one
// insert of their request keys and their events, one version and one
// event per delta.
func (r *Repository) AddStock(ctx context.Context, d inventory.StockDelta) (inventory.Product, bool, error) {
	call := &deltaCall{d: d}
	if err := r.hotDeltas.do(ctx, d.SKU, call, r.addStockBatch); err != nil {
		return inventory.Product{}, false, fmt.Errorf("add stock to %s: %w", d.SKU, err)
	}
	return call.p, call.applied, call.err
}

// deltaCall is one AddStock in a group, with its outcome.
type deltaCall struct {
	d       inventory.StockDelta
	p       inventory.Product
	applied bool
	err     error
}

// addStockBatch applies the deltas of one SKU in one transaction. If the
// transaction fails, none is applied and each call gets the error; a
// deadlock with a concurrent duplicate of one of them (possible only when
// Redis missed it) is such a failure, and the client's retry is then
// answered from stock_deltas.
func (r *Repository) addStockBatch(ctx context.Context, calls []*deltaCall) {
	sku := calls[0].d.SKU
	err := pgplatform.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		q := r.q.WithTx(tx)
		row, err := q.LockProduct(ctx, sku)
		if errors.Is(err, pgx.ErrNoRows) {
			return inventory.NotFound("sku", sku)
		}
		if err != nil {
			return fmt.Errorf("lock product %s: %w", sku, err)
		}
		before, err := productFromDB(row)
		if err != nil {
			return err
		}
		var keys []string
		for _, c := range calls {
			if c.d.RequestKey != "" {
				keys = append(keys, c.d.RequestKey)
			}
		}
		seen := map[string]bool{}
		if len(keys) > 0 {
			applied, err := q.AppliedStockDeltas(ctx, keys)
			if err != nil {
				return fmt.Errorf("applied stock deltas: %w", err)
			}
			for _, k := range applied {
				seen[k] = true
			}
		}

		// Every delta in turn against the running total, as if alone.
		p := before
		var (
			newKeys []string
			deltas  []int64
		)
		for _, c := range calls {
			if c.d.RequestKey != "" && seen[c.d.RequestKey] {
				continue // applied before (or earlier in this group): p is set below
			}
			available, err := c.d.Apply(p.Available)
			if err != nil {
				c.err = err
				continue
			}
			p.Available, p.Version = available, p.Version+1
			c.p, c.applied = p, true
			if c.d.RequestKey != "" {
				seen[c.d.RequestKey] = true
				newKeys, deltas = append(newKeys, c.d.RequestKey), append(deltas, c.d.Delta)
			}
		}
		if p.Version == before.Version {
			for _, c := range calls {
				if !c.applied && c.err == nil {
					c.p = before
				}
			}
			return nil // nothing applied: nothing to write
		}
		after, err := q.SetStock(ctx, inventorydb.SetStockParams{SKU: sku, Available: p.Available, Version: p.Version})
		if err != nil {
			return fmt.Errorf("set stock of %s: %w", sku, err)
		}
		last, err := productFromDB(after)
		if err != nil {
			return err
		}
		if len(newKeys) > 0 {
			if err := q.RecordStockDeltas(ctx, inventorydb.RecordStockDeltasParams{RequestKeys: newKeys, SKU: sku, Deltas: deltas}); err != nil {
				return fmt.Errorf("record stock deltas: %w", err)
			}
		}
		events := make([]outbox.Event, 0, len(calls))
		for _, c := range calls {
			switch {
			case c.applied:
				c.p.UpdatedAt = last.UpdatedAt
				events = append(events, stockAdjusted(c.p, c.d.Reason))
			case c.err == nil:
				c.p = last // a duplicate: the product as it is now
			}
		}
		return r.events.Append(ctx, tx, events...)
	})
	if err != nil {
		for _, c := range calls {
			c.p, c.applied, c.err = inventory.Product{}, false, err
		}
	}
}

// recordDelta claims d.RequestKey for this transaction's delta: false
// means a delta with that key was applied before. Without a key there is
// nothing to claim.
func recordDelta(ctx context.Context, q *inventorydb.Queries, d inventory.StockDelta) (bool, error) {
	if d.RequestKey == "" {
		return true, nil
	}
	n, err := q.RecordStockDelta(ctx, inventorydb.RecordStockDeltaParams{RequestKey: d.RequestKey, SKU: d.SKU, Delta: d.Delta})
	if err != nil {
		return false, fmt.Errorf("record stock delta: %w", err)
	}
	return n == 1, nil
}
