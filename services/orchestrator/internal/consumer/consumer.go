// Package consumer starts the order saga from order.created.v1 events. It
// is the handler of the orchestrator's inbox consumer (platform/inbox) on
// topic goodgo.order.events.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/saga"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	"github.com/goodgo/goodgo/services/orchestrator/internal/checkout"
)

// Starter starts sagas (saga.Engine).
type Starter interface {
	// StartTx creates the saga in tx unless one exists for its type and
	// correlation id, leased to this replica; see saga.Engine.StartTx.
	StartTx(ctx context.Context, tx pgx.Tx, req saga.StartRequest) (saga.StartResult, error)
	// ExecuteStarted runs a saga StartTx created, once tx committed,
	// from what StartTx stored; it waits for a free worker (ctx bounds the
	// wait). See saga.Engine.ExecuteStarted.
	ExecuteStarted(ctx context.Context, r saga.StartResult) error
}

var _ Starter = (*saga.Engine)(nil)

// Types are the event types Handler applies (inbox.Config.Types): the order
// topic's other events are skipped without a transaction.
var Types = []string{event.OrderCreated}

// Handler returns the inbox handler that starts one order saga per order.
//
// The saga is created inside the inbox's transaction (StartTx): the event
// is recorded if and only if its saga is, and the handler needs no
// connection besides the one its transaction holds. It used to start the
// saga with Engine.Start, which waits for a worker and for the saga's
// insert on a second connection of the same pool while the inbox's
// transaction holds one: with as many busy partitions as connections,
// every connection was held by a handler waiting for another, and
// consumption stalled for ever (issue 10). Once the transaction has
// committed and released its connection, the saga is executed on this
// replica (inbox.AfterCommit, Engine.ExecuteStarted, which does not read
// it back); waiting there for a free worker holds no connection and only
// slows this partition down. Should
// the execution not begin (the replica stops first), the saga's lease runs
// out and the recovery loop of some replica runs it.
//
// Exactly one saga per order does not depend on the inbox record: sagas
// are unique per (type, correlation id = order id), so a redelivered
// event, or the same order under another event id, finds the existing saga
// and starts nothing.
//
// Errors: an event that can never start a saga (it does not decode, the
// order is invalid) is inbox.Permanent and parked; anything else (the
// database) is retried by the inbox until it succeeds.
//
// ctx carries the event's span (a child of the producer's), which the saga
// stores: its step spans continue the order's trace.
func Handler(s Starter, logger *slog.Logger) inbox.Handler {
	return func(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
		if ev.Type != event.OrderCreated {
			return nil
		}
		var m orderv1.OrderCreated
		if err := proto.Unmarshal(ev.Payload, &m); err != nil {
			return inbox.Permanent(fmt.Errorf("decode %s %s: %w", ev.Type, ev.ID, err))
		}
		o := FromEvent(&m)
		if err := o.Validate(); err != nil {
			return inbox.Permanent(err)
		}
		data, err := o.Marshal()
		if err != nil {
			return inbox.Permanent(err)
		}
		r, err := s.StartTx(ctx, tx, saga.StartRequest{
			Type: checkout.SagaType, CorrelationID: o.OrderID, StartedBy: o.PlacedBy, Data: data,
		})
		if errors.Is(err, saga.ErrUnknownType) {
			return inbox.Permanent(err)
		}
		if err != nil {
			return fmt.Errorf("start order saga for %s: %w", o.OrderID, err)
		}
		if !r.Created {
			logger.InfoContext(ctx, "order saga exists already", "saga_id", r.SagaID.String(), "order_id", o.OrderID,
				"event_id", ev.ID.String())
			return nil
		}
		return inbox.AfterCommit(ctx, func(ctx context.Context) {
			if err := s.ExecuteStarted(ctx, r); err != nil {
				logger.WarnContext(ctx, "order saga created but not executed here; the recovery loop will run it when its lease expires",
					"saga_id", r.SagaID.String(), "order_id", o.OrderID, "error", err.Error())
				return
			}
			logger.InfoContext(ctx, "order saga started", "saga_id", r.SagaID.String(), "order_id", o.OrderID,
				"created", true, "event_id", ev.ID.String())
		})
	}
}

// FromEvent is the saga context of an order.created.v1 payload. The
// shipping address is left out: no step needs it.
func FromEvent(m *orderv1.OrderCreated) checkout.Order {
	o := checkout.Order{
		OrderID:       m.GetOrderId(),
		CustomerID:    m.GetCustomerId(),
		AmountMinor:   m.GetTotal().GetAmountMinor(),
		Currency:      m.GetTotal().GetCurrencyCode(),
		PaymentMethod: m.GetPaymentMethod(),
		PlacedBy:      m.GetPlacedBy(),
		Permissions:   checkout.Permissions,
		Items:         make([]checkout.Item, len(m.GetItems())),
	}
	for i, it := range m.GetItems() {
		o.Items[i] = checkout.Item{SKU: it.GetSku(), Quantity: it.GetQuantity()}
	}
	return o
}
