// Package postgres stores orders in PostgreSQL through the sqlc queries of
// package orderdb. Every change writes the business row first and then its
// domain event to the outbox, in one local transaction (DESIGN.md "Outbox"):
// an event is published if and only if its change committed.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	pgplatform "github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/services/order/internal/app"
	"github.com/goodgo/goodgo/services/order/internal/order"
	"github.com/goodgo/goodgo/services/order/internal/postgres/orderdb"
)

// Outbox appends events in the caller's transaction; *outbox.Writer is the
// implementation.
type Outbox interface {
	Append(ctx context.Context, tx pgx.Tx, events ...outbox.Event) error
}

// Repository implements app.Repository. It is safe for concurrent use.
type Repository struct {
	pool   *pgxpool.Pool
	q      *orderdb.Queries
	outbox Outbox
}

var _ app.Repository = (*Repository)(nil)

// NewRepository returns a Repository over pool that appends events through ob.
func NewRepository(pool *pgxpool.Pool, ob Outbox) *Repository {
	return &Repository{pool: pool, q: orderdb.New(pool), outbox: ob}
}

// Create implements app.Repository. The order and its lines are inserted by
// one statement whose ON CONFLICT on the idempotency key makes a duplicate
// insert nothing (waiting for a concurrent inserter of the same key to
// finish first), so two requests with one key never create two orders.
func (r *Repository) Create(ctx context.Context, o order.Order, idempotencyKey []byte) (order.Order, bool, error) {
	id, err := uuid.Parse(o.ID)
	if err != nil {
		return order.Order{}, false, fmt.Errorf("create order: id: %w", err)
	}
	addr, err := marshalAddress(o.ShippingAddress)
	if err != nil {
		return order.Order{}, false, fmt.Errorf("create order %s: %w", o.ID, err)
	}
	arg := orderdb.CreateOrderParams{
		ID:              id,
		CustomerID:      o.CustomerID,
		CurrencyCode:    o.Total.Currency,
		TotalMinor:      o.Total.Minor,
		ShippingAddress: addr,
		PaymentMethod:   o.PaymentMethod,
		PlacedBy:        o.PlacedBy,
		IdempotencyKey:  idempotencyKey,
		Now:             o.CreatedAt,
		LineNos:         make([]int32, len(o.Lines)),
		Skus:            make([]string, len(o.Lines)),
		Names:           make([]string, len(o.Lines)),
		Quantities:      make([]int32, len(o.Lines)),
		UnitPricesMinor: make([]int64, len(o.Lines)),
	}
	for i, l := range o.Lines {
		arg.LineNos[i] = int32(i + 1)
		arg.Skus[i], arg.Names[i], arg.Quantities[i], arg.UnitPricesMinor[i] = l.SKU, l.Name, l.Quantity, l.UnitPrice.Minor
	}
	if len(o.Lines) == 0 {
		// The statement inserts the order only through its lines.
		return order.Order{}, false, fmt.Errorf("create order %s: no lines", o.ID)
	}

	created := false
	err = pgplatform.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		n, err := r.q.WithTx(tx).CreateOrder(ctx, arg)
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		if n == 0 {
			return nil // the key's order exists; nothing to write
		}
		created = true
		return r.outbox.Append(ctx, tx, createdEvent(o))
	})
	if err != nil {
		return order.Order{}, false, fmt.Errorf("create order %s: %w", o.ID, err)
	}
	if !created {
		existing, err := r.FindByIdempotencyKey(ctx, idempotencyKey)
		if err != nil {
			return order.Order{}, false, fmt.Errorf("create order %s: read the order of its idempotency key: %w", o.ID, err)
		}
		return existing, false, nil
	}
	return o, true, nil
}

// FindByIdempotencyKey implements app.Repository.
func (r *Repository) FindByIdempotencyKey(ctx context.Context, key []byte) (order.Order, error) {
	row, err := r.q.GetOrderByIdempotencyKey(ctx, key)
	if err != nil {
		return order.Order{}, fmt.Errorf("find order by idempotency key: %w", notFound(err))
	}
	return r.withLines(ctx, r.q, row)
}

// Get implements app.Repository.
func (r *Repository) Get(ctx context.Context, id string) (order.Order, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return order.Order{}, fmt.Errorf("get order: id: %w", err)
	}
	row, err := r.q.GetOrder(ctx, uid)
	if err != nil {
		return order.Order{}, fmt.Errorf("get order %s: %w", id, notFound(err))
	}
	return r.withLines(ctx, r.q, row)
}

// Update implements app.Repository. The read is a plain SELECT (no row
// lock): the UPDATE ... WHERE version = read version detects a concurrent
// change, and the caller decides whether to retry.
func (r *Repository) Update(ctx context.Context, id string, change func(o *order.Order) (order.Change, error)) (order.Order, error) {
	uid, err := uuid.Parse(id)
	if err != nil {
		return order.Order{}, fmt.Errorf("update order: id: %w", err)
	}
	var result order.Order
	err = pgplatform.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		q := r.q.WithTx(tx)
		row, err := q.GetOrder(ctx, uid)
		if err != nil {
			return notFound(err)
		}
		o, err := r.withLines(ctx, q, row)
		if err != nil {
			return err
		}
		read := o.Version
		c, err := change(&o)
		if err != nil {
			return err
		}
		if c == order.ChangeNone {
			result = o
			return nil
		}
		addr, err := marshalAddress(o.ShippingAddress)
		if err != nil {
			return err
		}
		updated, err := q.UpdateOrder(ctx, orderdb.UpdateOrderParams{
			ID:              uid,
			Version:         read,
			Status:          string(o.Status),
			CancelReason:    o.CancelReason,
			ShippingAddress: addr,
			Now:             o.UpdatedAt,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("order %s changed since version %d: %w", id, read, optlock.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		o.Version, o.UpdatedAt = updated.Version, updated.UpdatedAt.UTC()
		ev, err := changeEvent(o, c)
		if err != nil {
			return err
		}
		if err := r.outbox.Append(ctx, tx, ev); err != nil {
			return err
		}
		result = o
		return nil
	})
	if err != nil {
		return order.Order{}, fmt.Errorf("update order %s: %w", id, err)
	}
	return result, nil
}

// withLines completes an order row with its lines.
func (r *Repository) withLines(ctx context.Context, q *orderdb.Queries, row orderdb.Order) (order.Order, error) {
	items, err := q.ListOrderItems(ctx, row.ID)
	if err != nil {
		return order.Order{}, fmt.Errorf("list lines of order %s: %w", row.ID, err)
	}
	return fromRow(row, items)
}

// notFound turns "no row" into the domain's not-found error.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return order.NoSuchOrder()
	}
	return err
}

func fromRow(row orderdb.Order, items []orderdb.OrderItem) (order.Order, error) {
	var addr address
	if err := json.Unmarshal(row.ShippingAddress, &addr); err != nil {
		return order.Order{}, fmt.Errorf("order %s: decode shipping address: %w", row.ID, err)
	}
	o := order.Order{
		ID:              row.ID.String(),
		CustomerID:      row.CustomerID,
		Status:          order.Status(row.Status),
		Lines:           make([]order.Line, len(items)),
		Total:           order.Money{Currency: row.CurrencyCode, Minor: row.TotalMinor},
		ShippingAddress: order.Address(addr),
		PaymentMethod:   row.PaymentMethod,
		CancelReason:    row.CancelReason,
		PlacedBy:        row.PlacedBy,
		Version:         row.Version,
		CreatedAt:       row.CreatedAt.UTC(),
		UpdatedAt:       row.UpdatedAt.UTC(),
	}
	for i, it := range items {
		o.Lines[i] = order.Line{
			SKU:       it.SKU,
			Name:      it.Name,
			Quantity:  it.Quantity,
			UnitPrice: order.Money{Currency: row.CurrencyCode, Minor: it.UnitPriceMinor},
		}
	}
	return o, nil
}

// address is the JSON form of the shipping_address column.
type address struct {
	Name        string `json:"name"`
	Line1       string `json:"line1"`
	Line2       string `json:"line2,omitempty"`
	City        string `json:"city"`
	PostalCode  string `json:"postal_code"`
	CountryCode string `json:"country_code"`
}

func marshalAddress(a order.Address) ([]byte, error) {
	b, err := json.Marshal(address(a))
	if err != nil {
		return nil, fmt.Errorf("encode shipping address: %w", err)
	}
	return b, nil
}
