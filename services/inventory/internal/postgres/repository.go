// Package postgres stores the inventory domain in PostgreSQL through the
// sqlc queries of inventorydb. Every change writes its business rows first
// and then its events to the outbox, in one transaction, so an event exists
// if and only if its change committed.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	pgplatform "github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
	"github.com/goodgo/goodgo/services/inventory/internal/postgres/inventorydb"
)

// EventAppender appends events to the outbox inside the caller's
// transaction (outbox.Writer). On error the caller must roll back.
type EventAppender interface {
	Append(ctx context.Context, tx pgx.Tx, events ...outbox.Event) error
}

var _ EventAppender = (*outbox.Writer)(nil)

// Repository is the inventory's storage. It is safe for concurrent use.
type Repository struct {
	pool   *pgxpool.Pool
	q      *inventorydb.Queries
	events EventAppender

	// contention, if set, says which SKUs are hot; their single-item
	// reservations go through hotReserves.
	contention  *optlock.Contention
	hotReserves *groupCommit[*reserveCall]
	hotDeltas   *groupCommit[*deltaCall]
}

// Option configures a Repository.
type Option func(*Repository)

// WithContention makes the Repository watch how often the writes of each
// SKU collide (contention's aggregate should be event.AggregateProduct)
// and take the pessimistic path for a hot one: its reservations queue in
// this process and commit in groups (see Reserve). Without it every
// reservation has a transaction of its own.
func WithContention(contention *optlock.Contention) Option {
	return func(r *Repository) { r.contention = contention }
}

// hotBatch bounds the writes of one group commit; hotBatchTimeout bounds
// its transaction.
const (
	hotBatch        = 64
	hotBatchTimeout = 10 * time.Second
)

// NewRepository returns a Repository over pool that appends its events
// through events.
func NewRepository(pool *pgxpool.Pool, events EventAppender, opts ...Option) *Repository {
	r := &Repository{
		pool: pool, q: inventorydb.New(pool), events: events,
		hotReserves: newGroupCommit[*reserveCall](hotBatch, hotBatchTimeout),
		hotDeltas:   newGroupCommit[*deltaCall](hotBatch, hotBatchTimeout),
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// ProductsBySKU returns the products among skus that exist, in SKU order.
// Unknown SKUs are absent from the result.
func (r *Repository) ProductsBySKU(ctx context.Context, skus []string) ([]inventory.Product, error) {
	rows, err := r.q.GetProductsBySKU(ctx, skus)
	if err != nil {
		return nil, fmt.Errorf("get products by sku: %w", err)
	}
	return productsFromDB(rows)
}

// ListProducts returns at most limit products whose SKU sorts after after
// ("" for the start of the catalog), in SKU order.
func (r *Repository) ListProducts(ctx context.Context, after string, limit int) ([]inventory.Product, error) {
	rows, err := r.q.ListProducts(ctx, inventorydb.ListProductsParams{AfterSku: after, PageLimit: int32(limit)})
	if err != nil {
		return nil, fmt.Errorf("list products: %w", err)
	}
	return productsFromDB(rows)
}

// Product returns one product, or an error wrapping inventory.ErrNotFound.
func (r *Repository) Product(ctx context.Context, sku string) (inventory.Product, error) {
	return getProduct(ctx, r.q, sku)
}

func getProduct(ctx context.Context, q *inventorydb.Queries, sku string) (inventory.Product, error) {
	row, err := q.GetProduct(ctx, sku)
	if errors.Is(err, pgx.ErrNoRows) {
		return inventory.Product{}, inventory.NotFound("sku", sku)
	}
	if err != nil {
		return inventory.Product{}, fmt.Errorf("get product %s: %w", sku, err)
	}
	return productFromDB(row)
}

// AdjustStock sets the available units of a.SKU if the product is still at
// a.ExpectedVersion, and appends inventory.stock_adjusted.v1 in the same
// transaction. It returns the product after the change, an error wrapping
// inventory.ErrNotFound for an unknown SKU, or one wrapping
// optlock.ErrConflict when the version has moved on.
func (r *Repository) AdjustStock(ctx context.Context, a inventory.Adjustment) (inventory.Product, error) {
	var p inventory.Product
	err := pgplatform.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		q := r.q.WithTx(tx)
		row, err := q.SetAvailable(ctx, inventorydb.SetAvailableParams{
			SKU: a.SKU, Available: a.Available, Version: a.ExpectedVersion,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			// Unknown SKU or stale version: the read tells which. Products
			// are never deleted, so the answer cannot change under us in a
			// way that matters.
			current, err := getProduct(ctx, q, a.SKU)
			if err != nil {
				return err
			}
			return fmt.Errorf("adjust stock: %w", &optlock.ConflictError{
				Aggregate: event.AggregateProduct, ID: a.SKU, Presented: a.ExpectedVersion, Current: current.Version,
			})
		}
		if err != nil {
			return fmt.Errorf("set available of %s: %w", a.SKU, err)
		}
		if p, err = productFromDB(row); err != nil {
			return err
		}
		return r.events.Append(ctx, tx, stockAdjusted(p, a.Reason))
	})
	if err != nil {
		return inventory.Product{}, err
	}
	return p, nil
}

// productsFromDB converts and checks rows.
func productsFromDB(rows []inventorydb.Product) ([]inventory.Product, error) {
	out := make([]inventory.Product, len(rows))
	for i, row := range rows {
		p, err := productFromDB(row)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

func productFromDB(row inventorydb.Product) (inventory.Product, error) {
	p := inventory.Product{
		SKU:       row.SKU,
		Name:      row.Name,
		UnitPrice: inventory.Money{Currency: row.CurrencyCode, Minor: row.UnitPriceMinor},
		Available: row.Available,
		Reserved:  row.Reserved,
		Version:   row.Version,
		UpdatedAt: row.UpdatedAt,
	}
	if err := p.Validate(); err != nil {
		return inventory.Product{}, fmt.Errorf("stored %w", err)
	}
	return p, nil
}

// PostgreSQL error codes this package distinguishes.
const foreignKeyViolation = "23503"

func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == foreignKeyViolation
}

// newID returns a new time-ordered id (UUIDv7: index-friendly inserts).
func newID() (uuid.UUID, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.UUID{}, fmt.Errorf("new id: %w", err)
	}
	return id, nil
}
