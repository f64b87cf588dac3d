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
	// Start creates the saga unless one exists for its type and
	// correlation id, and runs it; see saga.Engine.Start.
	Start(ctx context.Context, req saga.StartRequest) (saga.StartResult, error)
}

var _ Starter = (*saga.Engine)(nil)

// Types are the event types Handler applies (inbox.Config.Types): the order
// topic's other events are skipped without a transaction.
var Types = []string{event.OrderCreated}

// Handler returns the inbox handler that starts one order saga per order.
//
// The saga is created in its own transaction, not in the inbox's tx: the
// replica that creates it must run it right after the commit, and the inbox
// has no after-commit hook. Exactly one saga per order does not depend on
// the inbox record: sagas are unique per (type, correlation id = order id),
// so a redelivered event, or one whose inbox transaction rolled back after
// the saga was created, finds the existing saga and starts nothing.
//
// ctx carries the event's span (a child of the producer's), which the saga
// stores: its step spans continue the order's trace.
func Handler(s Starter, logger *slog.Logger) inbox.Handler {
	return func(ctx context.Context, _ pgx.Tx, ev inbox.Event) error {
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
		r, err := s.Start(ctx, saga.StartRequest{
			Type: checkout.SagaType, CorrelationID: o.OrderID, StartedBy: o.PlacedBy, Data: data,
		})
		if errors.Is(err, saga.ErrUnknownType) {
			return inbox.Permanent(err)
		}
		if err != nil {
			return fmt.Errorf("start order saga for %s: %w", o.OrderID, err)
		}
		logger.InfoContext(ctx, "order saga started", "saga_id", r.SagaID.String(), "order_id", o.OrderID,
			"created", r.Created, "event_id", ev.ID.String())
		return nil
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
