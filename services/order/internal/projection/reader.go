package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/services/order/internal/projection/orderreaddb"
)

// Page sizes of List.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
)

// DefaultMaxWait bounds a read-your-writes wait when the caller's deadline
// does not bound it sooner.
const DefaultMaxWait = 2 * time.Second

// ErrNotFound is an order the view does not have (or not yet: its
// order.created is not applied).
var ErrNotFound = errors.New("projection: order view not found")

// BehindError is a read-your-writes wait that ran out: the view has
// applied order version Have, the caller asked for at least Want.
type BehindError struct{ Have, Want int64 }

func (e *BehindError) Error() string {
	return fmt.Sprintf("projection: the view has order version %d, %d asked for", e.Have, e.Want)
}

// Reader answers the queries from the view, never from the write model.
type Reader struct {
	db      orderreaddb.DBTX
	maxWait time.Duration
}

// NewReader returns a Reader on db (the read database's pool). maxWait
// bounds read-your-writes waits (DefaultMaxWait when 0).
func NewReader(db orderreaddb.DBTX, maxWait time.Duration) *Reader {
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	return &Reader{db: db, maxWait: maxWait}
}

// Get returns the order's view. With minVersion > 0 it first waits until
// the view has applied at least that order version (read-your-writes),
// up to the Reader's bound or ctx's deadline, whichever is sooner, and
// returns a *BehindError when it has not.
func (r *Reader) Get(ctx context.Context, id uuid.UUID, minVersion int64) (View, error) {
	q := orderreaddb.New(r.db)
	if minVersion > 0 {
		if err := r.waitFor(ctx, q, id, minVersion); err != nil {
			return View{}, err
		}
	}
	row, err := q.GetOrderView(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return View{}, ErrNotFound
	}
	if err != nil {
		return View{}, fmt.Errorf("projection: get %s: %w", id, err)
	}
	return fromRow(row)
}

// waitFor polls the order's applied version, briefly at first (the
// projector usually commits within milliseconds) and less often later.
func (r *Reader) waitFor(ctx context.Context, q *orderreaddb.Queries, id uuid.UUID, want int64) error {
	wctx, cancel := context.WithTimeout(ctx, r.maxWait)
	defer cancel()
	poll := &backoff.Exponential{Policy: backoff.Policy{Min: 2 * time.Millisecond, Max: 50 * time.Millisecond}}
	var have int64
	for {
		v, err := q.OrderViewVersion(wctx, id)
		switch {
		case err == nil:
			have = v
		case errors.Is(err, pgx.ErrNoRows):
		case wctx.Err() != nil && ctx.Err() == nil:
			return &BehindError{Have: have, Want: want}
		default:
			return fmt.Errorf("projection: version of %s: %w", id, err)
		}
		if have >= want {
			return nil
		}
		if backoff.Sleep(wctx, poll.Next()) != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return &BehindError{Have: have, Want: want}
		}
	}
}

// Cursor is where a page ends: the last order listed.
type Cursor struct {
	CreatedAt time.Time
	OrderID   uuid.UUID
}

// ListQuery selects a page of a customer's orders.
type ListQuery struct {
	CustomerID string
	// Status, when not "", lists only orders with that status.
	Status string
	// PageSize is 1 to MaxPageSize.
	PageSize int
	// After is the previous page's cursor; nil for the first page.
	After *Cursor
}

// List returns a page of the customer's orders, newest first, and the
// cursor of the next page (nil on the last).
func (r *Reader) List(ctx context.Context, lq ListQuery) ([]View, *Cursor, error) {
	if lq.PageSize < 1 || lq.PageSize > MaxPageSize {
		return nil, nil, fmt.Errorf("projection: page size %d out of range", lq.PageSize)
	}
	after := Cursor{CreatedAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), OrderID: uuid.Max}
	if lq.After != nil {
		after = *lq.After
	}
	q := orderreaddb.New(r.db)
	// One more than asked: whether there is a next page.
	limit := int32(lq.PageSize + 1) //nolint:gosec // bounded by MaxPageSize above
	var rows []orderreaddb.OrderView
	var err error
	if lq.Status == "" {
		rows, err = q.ListCustomerOrders(ctx, orderreaddb.ListCustomerOrdersParams{
			CustomerID: lq.CustomerID, AfterCreatedAt: after.CreatedAt, AfterOrderID: after.OrderID, PageSize: limit,
		})
	} else {
		rows, err = q.ListCustomerOrdersByStatus(ctx, orderreaddb.ListCustomerOrdersByStatusParams{
			CustomerID: lq.CustomerID, Status: lq.Status, AfterCreatedAt: after.CreatedAt, AfterOrderID: after.OrderID, PageSize: limit,
		})
	}
	if err != nil {
		return nil, nil, fmt.Errorf("projection: list orders of %q: %w", lq.CustomerID, err)
	}
	var next *Cursor
	if len(rows) > lq.PageSize {
		rows = rows[:lq.PageSize]
		last := rows[len(rows)-1]
		next = &Cursor{CreatedAt: last.CreatedAt, OrderID: last.OrderID}
	}
	out := make([]View, len(rows))
	for i, row := range rows {
		if out[i], err = fromRow(row); err != nil {
			return nil, nil, err
		}
	}
	return out, next, nil
}

func fromRow(r orderreaddb.OrderView) (View, error) {
	v := View{
		OrderID: r.OrderID, CustomerID: r.CustomerID, Status: r.Status, CurrencyCode: r.CurrencyCode,
		TotalMinor: r.TotalMinor, CancelReason: r.CancelReason,
		PaymentStatus: r.PaymentStatus, PaymentID: r.PaymentID, PaymentReason: r.PaymentReason,
		InventoryStatus: r.InventoryStatus, ReservationID: r.ReservationID, InventoryReason: r.InventoryReason,
		OrderVersion: r.OrderVersion, PaymentVersion: r.PaymentVersion, InventoryVersion: r.InventoryVersion,
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
	}
	if err := json.Unmarshal(r.Items, &v.Items); err != nil {
		return View{}, fmt.Errorf("projection: items of %s: %w", r.OrderID, err)
	}
	return v, nil
}
