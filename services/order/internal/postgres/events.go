package postgres

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/outbox"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	"github.com/goodgo/goodgo/services/order/internal/order"
)

// createdEvent is order.created.v1 for a new order. It carries the shipping
// address, so it is PII and the outbox encrypts it.
func createdEvent(o order.Order) outbox.Event {
	items := make([]*commonv1.LineItem, len(o.Lines))
	for i, l := range o.Lines {
		items[i] = &commonv1.LineItem{Sku: l.SKU, Quantity: l.Quantity, Name: l.Name, UnitPrice: commonv1.NewMoney(l.UnitPrice.Currency, l.UnitPrice.Minor)}
	}
	return orderEvent(o, event.OrderCreated, true, &orderv1.OrderCreated{
		OrderId:         o.ID,
		CustomerId:      o.CustomerID,
		Items:           items,
		Total:           commonv1.NewMoney(o.Total.Currency, o.Total.Minor),
		ShippingAddress: addressProto(o.ShippingAddress),
		PaymentMethod:   o.PaymentMethod,
		PlacedBy:        o.PlacedBy,
	})
}

// changeEvent is the event of a change, o being the order after it.
func changeEvent(o order.Order, c order.Change) (outbox.Event, error) {
	switch c {
	case order.ChangeConfirmed:
		return orderEvent(o, event.OrderConfirmed, false, &orderv1.OrderConfirmed{OrderId: o.ID}), nil
	case order.ChangeCancelled:
		return orderEvent(o, event.OrderCancelled, false, &orderv1.OrderCancelled{OrderId: o.ID, Reason: o.CancelReason}), nil
	case order.ChangeShippingAddress:
		return orderEvent(o, event.OrderShippingAddressChanged, true, &orderv1.OrderShippingAddressChanged{
			OrderId: o.ID, ShippingAddress: addressProto(o.ShippingAddress),
		}), nil
	default:
		// ChangeNone writes nothing, so this is a Change added to the domain
		// without an event here: fail the write rather than lose the event.
		return outbox.Event{}, fmt.Errorf("no event for order change %d", c)
	}
}

func orderEvent(o order.Order, typ string, pii bool, payload proto.Message) outbox.Event {
	return outbox.Event{
		Topic:            event.TopicOrder,
		AggregateType:    event.AggregateOrder,
		AggregateID:      o.ID,
		AggregateVersion: o.Version,
		Type:             typ,
		Payload:          payload,
		PII:              pii,
	}
}

func addressProto(a order.Address) *orderv1.Address {
	return &orderv1.Address{
		Name: a.Name, Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, CountryCode: a.CountryCode,
	}
}
