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
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/platform/keyring"
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
	pii    *keyring.Keyring
}

var _ app.Repository = (*Repository)(nil)

// ErrNoKeys is returned by NewRepository without a PII keyring: addresses
// are never written in the clear.
var ErrNoKeys = errors.New("order repository: no PII keyring to seal shipping addresses")

// NewRepository returns a Repository over pool that appends events through
// ob and seals shipping addresses with pii.
func NewRepository(pool *pgxpool.Pool, ob Outbox, pii *keyring.Keyring) (*Repository, error) {
	if pii == nil {
		return nil, ErrNoKeys
	}
	return &Repository{pool: pool, q: orderdb.New(pool), outbox: ob, pii: pii}, nil
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
	kid, addr, err := r.sealAddress(id, o.ShippingAddress)
	if err != nil {
		return order.Order{}, false, fmt.Errorf("create order %s: %w", o.ID, err)
	}
	arg := orderdb.CreateOrderParams{
		ID:                   id,
		CustomerID:           o.CustomerID,
		CurrencyCode:         o.Total.Currency,
		TotalMinor:           o.Total.Minor,
		ShippingAddress:      addr,
		ShippingAddressKeyID: kid,
		PaymentMethod:        o.PaymentMethod,
		PlacedBy:             o.PlacedBy,
		IdempotencyKey:       idempotencyKey,
		Now:                  o.CreatedAt,
		LineNos:              make([]int32, len(o.Lines)),
		Skus:                 make([]string, len(o.Lines)),
		Names:                make([]string, len(o.Lines)),
		Quantities:           make([]int32, len(o.Lines)),
		UnitPricesMinor:      make([]int64, len(o.Lines)),
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
		o, err := r.read(ctx, q, uid)
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
		kid, addr, err := r.sealAddress(uid, o.ShippingAddress)
		if err != nil {
			return err
		}
		updated, err := q.UpdateOrder(ctx, orderdb.UpdateOrderParams{
			ID:                   uid,
			Version:              read,
			Status:               string(o.Status),
			CancelReason:         o.CancelReason,
			ShippingAddress:      addr,
			ShippingAddressKeyID: kid,
			Now:                  o.UpdatedAt,
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

// ListPending implements app.Repository: one query for the page of orders
// (on the partial index of PENDING orders), one for all their lines.
func (r *Repository) ListPending(ctx context.Context, createdBefore time.Time, after *app.PageCursor, limit int) ([]order.Order, error) {
	p := orderdb.ListStalePendingOrdersParams{CreatedBefore: createdBefore, AfterCreatedAt: time.Unix(0, 0), PageSize: int32(limit)}
	if after != nil {
		p.AfterCreatedAt, p.AfterID = after.CreatedAt, after.ID
	}
	rows, err := r.q.ListStalePendingOrders(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("list pending orders: %w", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	ids := make([]uuid.UUID, len(rows))
	for i, row := range rows {
		ids[i] = row.ID
	}
	items, err := r.q.ListOrderItemsOfOrders(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("list lines of pending orders: %w", err)
	}
	lines := make(map[uuid.UUID][]orderdb.OrderItem, len(rows))
	for _, it := range items {
		lines[it.OrderID] = append(lines[it.OrderID], it)
	}
	out := make([]order.Order, len(rows))
	for i, row := range rows {
		if out[i], err = fromRow(row, order.Address{}, lines[row.ID]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// withLines completes an order row with its lines.
// read reads order id with its lines, in one round trip when it has
// lines (every placed order has), else in two.
func (r *Repository) read(ctx context.Context, q *orderdb.Queries, id uuid.UUID) (order.Order, error) {
	rows, err := q.GetOrderWithItems(ctx, id)
	if err != nil {
		return order.Order{}, fmt.Errorf("read order %s: %w", id, err)
	}
	if len(rows) == 0 {
		row, err := q.GetOrder(ctx, id)
		if err != nil {
			return order.Order{}, notFound(err)
		}
		return r.withLines(ctx, q, row)
	}
	items := make([]orderdb.OrderItem, len(rows))
	for i, row := range rows {
		items[i] = row.OrderItem
	}
	addr, err := r.openAddress(id, rows[0].Order.ShippingAddressKeyID, rows[0].Order.ShippingAddress)
	if err != nil {
		return order.Order{}, err
	}
	return fromRow(rows[0].Order, addr, items)
}

func (r *Repository) withLines(ctx context.Context, q *orderdb.Queries, row orderdb.Order) (order.Order, error) {
	items, err := q.ListOrderItems(ctx, row.ID)
	if err != nil {
		return order.Order{}, fmt.Errorf("list lines of order %s: %w", row.ID, err)
	}
	addr, err := r.openAddress(row.ID, row.ShippingAddressKeyID, row.ShippingAddress)
	if err != nil {
		return order.Order{}, err
	}
	return fromRow(row, addr, items)
}

// notFound turns "no row" into the domain's not-found error.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return order.NoSuchOrder()
	}
	return err
}

func fromRow(row orderdb.Order, addr order.Address, items []orderdb.OrderItem) (order.Order, error) {
	o := order.Order{
		ID:              row.ID.String(),
		CustomerID:      row.CustomerID,
		Status:          order.Status(row.Status),
		Lines:           make([]order.Line, len(items)),
		Total:           order.Money{Currency: row.CurrencyCode, Minor: row.TotalMinor},
		ShippingAddress: addr,
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

// address is the JSON form of a shipping address, sealed in the
// shipping_address column.
type address struct {
	Name        string `json:"name"`
	Line1       string `json:"line1"`
	Line2       string `json:"line2,omitempty"`
	City        string `json:"city"`
	PostalCode  string `json:"postal_code"`
	CountryCode string `json:"country_code"`
}

// sealAddress seals a's JSON under the active PII key, bound to order id,
// and returns the key id to store beside it.
func (r *Repository) sealAddress(id uuid.UUID, a order.Address) (string, []byte, error) {
	b, err := json.Marshal(address(a))
	if err != nil {
		return "", nil, fmt.Errorf("encode shipping address: %w", err)
	}
	return r.sealRaw(id, b)
}

func (r *Repository) sealRaw(id uuid.UUID, plain []byte) (string, []byte, error) {
	kid, sealed, err := r.pii.Seal(plain, addressAAD(id))
	if err != nil {
		return "", nil, fmt.Errorf("seal shipping address: %w", err)
	}
	return kid, sealed, nil
}

// openAddress opens a stored address: sealed under kid, or in the clear
// when kid is "" (written before addresses were sealed; `order reseal`
// seals those).
func (r *Repository) openAddress(id uuid.UUID, kid string, stored []byte) (order.Address, error) {
	plain, err := r.openRaw(id, kid, stored)
	if err != nil {
		return order.Address{}, err
	}
	var a address
	if err := json.Unmarshal(plain, &a); err != nil {
		return order.Address{}, fmt.Errorf("order %s: decode shipping address: %w", id, err)
	}
	return order.Address(a), nil
}

func (r *Repository) openRaw(id uuid.UUID, kid string, stored []byte) ([]byte, error) {
	if kid == "" {
		return stored, nil
	}
	plain, err := r.pii.Open(kid, stored, addressAAD(id))
	if err != nil {
		return nil, fmt.Errorf("order %s: open shipping address: %w", id, err)
	}
	return plain, nil
}

// addressAAD binds a sealed address to its order: one moved to another
// order's row does not open.
func addressAAD(id uuid.UUID) []byte { return []byte("orders.shipping_address/" + id.String()) }
