package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/optlock"
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
	err = pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
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

// AddStock applies d in one conditional UPDATE that waits for the row lock
// instead of checking a version (the pessimistic path of an AdjustStock by
// delta without a client's version: it cannot conflict), and appends
// inventory.stock_adjusted.v1 in the same transaction. It returns the
// product after the change and applied true; an error wrapping
// inventory.ErrNotFound or inventory.ErrStockOutOfRange; or, when a delta
// with d.RequestKey was applied before, the product as it is now and
// applied false, having changed nothing.
func (r *Repository) AddStock(ctx context.Context, d inventory.StockDelta) (p inventory.Product, applied bool, err error) {
	err = pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		q := r.q.WithTx(tx)
		if applied, err = recordDelta(ctx, q, d); err != nil || !applied {
			if err == nil {
				p, err = getProduct(ctx, q, d.SKU)
			}
			return err
		}
		row, err := q.AddAvailable(ctx, inventorydb.AddAvailableParams{SKU: d.SKU, Delta: d.Delta, MaxAvailable: inventory.MaxAvailable})
		if errors.Is(err, pgx.ErrNoRows) {
			// Unknown SKU, or out of range (even if a newer commit, which
			// this read may see, would now allow it: the UPDATE refused).
			current, err := getProduct(ctx, q, d.SKU)
			if err != nil {
				return err
			}
			return fmt.Errorf("%s: %d available %+d: %w", d.SKU, current.Available, d.Delta, inventory.ErrStockOutOfRange)
		}
		if err != nil {
			return fmt.Errorf("add to available of %s: %w", d.SKU, err)
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
