// Package postgres stores payments in PostgreSQL over the sqlc queries in
// paymentdb. Every write puts the payment row and its domain event (outbox
// row, platform/outbox) in one local transaction, business row first, so the
// event exists if and only if the change committed and, per payment, outbox
// order is commit order.
package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	pgplatform "github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/services/payment/internal/app"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
	"github.com/goodgo/goodgo/services/payment/internal/postgres/paymentdb"
)

// Repository implements app.Repository. It is safe for concurrent use.
type Repository struct {
	pool   *pgxpool.Pool
	outbox *outbox.Writer
}

var _ app.Repository = (*Repository)(nil)

// NewRepository returns a Repository over pool appending events with w.
func NewRepository(pool *pgxpool.Pool, w *outbox.Writer) *Repository {
	return &Repository{pool: pool, outbox: w}
}

// CreatePayment implements app.Repository. The INSERT … ON CONFLICT
// (order_id) DO NOTHING makes the unique order id the last line of defence:
// however many concurrent requests (with or without idempotency keys) try
// to pay one order, one insert wins and the others read its row.
func (r *Repository) CreatePayment(ctx context.Context, p payment.Payment) (payment.Payment, bool, error) {
	stored, created, err := r.insertOnce(ctx, p.OrderID, func(q *paymentdb.Queries) (paymentdb.Payment, error) {
		return q.CreatePayment(ctx, paymentdb.CreatePaymentParams{
			ID:            uuid.UUID(p.ID),
			OrderID:       uuid.UUID(p.OrderID),
			CustomerID:    p.CustomerID,
			CurrencyCode:  p.Amount.Currency,
			AmountMinor:   p.Amount.Minor,
			Status:        string(p.Status),
			DeclineReason: p.DeclineReason,
			PaymentMethod: p.Method,
			Now:           p.CreatedAt,
		})
	}, func(tx pgx.Tx, stored payment.Payment) error {
		return r.outbox.Append(ctx, tx, createdEvent(stored))
	})
	if err != nil {
		return payment.Payment{}, false, fmt.Errorf("postgres: create payment: %w", err)
	}
	return stored, created, nil
}

// VoidPayment implements app.Repository, like CreatePayment: a concurrent
// ProcessPayment of the same order in flight is waited for and, if it
// committed, its payment returned. No event is written: no money moved.
func (r *Repository) VoidPayment(ctx context.Context, p payment.Payment) (payment.Payment, bool, error) {
	stored, created, err := r.insertOnce(ctx, p.OrderID, func(q *paymentdb.Queries) (paymentdb.Payment, error) {
		return q.CreateVoidedPayment(ctx, paymentdb.CreateVoidedPaymentParams{
			ID:           uuid.UUID(p.ID),
			OrderID:      uuid.UUID(p.OrderID),
			CustomerID:   p.CustomerID,
			RefundReason: p.RefundReason,
			Now:          p.CreatedAt,
		})
	}, nil)
	if err != nil {
		return payment.Payment{}, false, fmt.Errorf("postgres: void payment: %w", err)
	}
	return stored, created, nil
}

// insertOnce runs insert, an INSERT … ON CONFLICT (order_id) DO NOTHING
// RETURNING, in a transaction, then created (if not nil) with the new
// payment in the same transaction. When the order has a payment already,
// insert returns no row and insertOnce returns that payment instead
// (created false): the conflicting insert had committed before ON CONFLICT
// gave up (it waits for an uncommitted one), and under READ COMMITTED the
// next statement sees it.
func (r *Repository) insertOnce(ctx context.Context, orderID payment.ID,
	insert func(*paymentdb.Queries) (paymentdb.Payment, error), created func(pgx.Tx, payment.Payment) error,
) (stored payment.Payment, isNew bool, err error) {
	err = pgplatform.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		q := paymentdb.New(tx)
		row, err := insert(q)
		if errors.Is(err, pgx.ErrNoRows) {
			if row, err = q.GetPaymentByOrder(ctx, uuid.UUID(orderID)); err != nil {
				return fmt.Errorf("read existing payment of order %s: %w", orderID, err)
			}
			stored = fromRow(row)
			return nil
		}
		if err != nil {
			return fmt.Errorf("insert: %w", err)
		}
		stored, isNew = fromRow(row), true
		if created != nil {
			return created(tx, stored)
		}
		return nil
	})
	return stored, isNew, err
}

// FindPayment implements app.Repository.
func (r *Repository) FindPayment(ctx context.Context, ref payment.Ref) (payment.Payment, error) {
	q := paymentdb.New(r.pool)
	var (
		row paymentdb.Payment
		err error
	)
	if ref.ByOrder() {
		row, err = q.GetPaymentByOrder(ctx, uuid.UUID(ref.OrderID))
	} else {
		row, err = q.GetPayment(ctx, uuid.UUID(ref.PaymentID))
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return payment.Payment{}, fmt.Errorf("postgres: %s: %w", ref, payment.ErrNotFound)
	}
	if err != nil {
		return payment.Payment{}, fmt.Errorf("postgres: read %s: %w", ref, err)
	}
	return fromRow(row), nil
}

// SaveRefund implements app.Repository with a conditional UPDATE on id,
// version and status CAPTURED.
func (r *Repository) SaveRefund(ctx context.Context, p payment.Payment, expected int64) (payment.Payment, error) {
	var stored payment.Payment
	err := pgplatform.InTx(ctx, r.pool, func(tx pgx.Tx) error {
		row, err := paymentdb.New(tx).RefundPayment(ctx, paymentdb.RefundPaymentParams{
			ID:           uuid.UUID(p.ID),
			Version:      expected,
			RefundReason: p.RefundReason,
			Now:          p.UpdatedAt,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("payment %s is no longer CAPTURED at version %d: %w", p.ID, expected, optlock.ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("update payment: %w", err)
		}
		stored = fromRow(row)
		return r.outbox.Append(ctx, tx, refundedEvent(stored))
	})
	if err != nil {
		return payment.Payment{}, fmt.Errorf("postgres: refund payment: %w", err)
	}
	return stored, nil
}

func fromRow(row paymentdb.Payment) payment.Payment {
	return payment.Payment{
		ID:            payment.ID(row.ID),
		OrderID:       payment.ID(row.OrderID),
		CustomerID:    row.CustomerID,
		Amount:        payment.Money{Currency: row.CurrencyCode, Minor: row.AmountMinor},
		Status:        payment.Status(row.Status),
		DeclineReason: row.DeclineReason,
		Refunded:      row.RefundedMinor,
		RefundReason:  row.RefundReason,
		Method:        row.PaymentMethod,
		Version:       row.Version,
		CreatedAt:     row.CreatedAt.UTC(),
		UpdatedAt:     row.UpdatedAt.UTC(),
	}
}

// Events. The payloads hold ids, amounts and reasons only, never the
// payment method or anything personal, so they are stored in plaintext
// (PII false).

func createdEvent(p payment.Payment) outbox.Event {
	e := outbox.Event{
		Topic:            event.TopicPayment,
		AggregateType:    event.AggregatePayment,
		AggregateID:      p.ID.String(),
		AggregateVersion: p.Version,
	}
	if p.Status == payment.StatusDeclined {
		e.Type = event.PaymentDeclined
		e.Payload = &paymentv1.PaymentDeclined{
			PaymentId: p.ID.String(),
			OrderId:   p.OrderID.String(),
			Amount:    commonv1.NewMoney(p.Amount.Currency, p.Amount.Minor),
			Reason:    p.DeclineReason,
		}
		return e
	}
	e.Type = event.PaymentProcessed
	e.Payload = &paymentv1.PaymentProcessed{
		PaymentId: p.ID.String(),
		OrderId:   p.OrderID.String(),
		Amount:    commonv1.NewMoney(p.Amount.Currency, p.Amount.Minor),
	}
	return e
}

func refundedEvent(p payment.Payment) outbox.Event {
	return outbox.Event{
		Topic:            event.TopicPayment,
		AggregateType:    event.AggregatePayment,
		AggregateID:      p.ID.String(),
		AggregateVersion: p.Version,
		Type:             event.PaymentRefunded,
		Payload: &paymentv1.PaymentRefunded{
			PaymentId: p.ID.String(),
			OrderId:   p.OrderID.String(),
			Amount:    commonv1.NewMoney(p.Amount.Currency, p.Refunded),
			Reason:    p.RefundReason,
		},
	}
}
