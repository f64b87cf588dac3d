package postgres

import (
	"google.golang.org/protobuf/proto"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/outbox"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// reservationEvent is the event recording res's current status. The
// aggregate id is the order id: there is one reservation per order, and the
// order's consumers key their state by it. None of it is personal data.
func reservationEvent(res inventory.Reservation) outbox.Event {
	items := make([]*inventoryv1.ReservationItem, len(res.Items))
	for i, it := range res.Items {
		items[i] = &inventoryv1.ReservationItem{Sku: it.SKU, Quantity: it.Quantity}
	}
	var (
		typ     string
		payload proto.Message
	)
	switch res.Status {
	case inventory.StatusReserved:
		typ = event.InventoryReserved
		payload = &inventoryv1.StockReserved{ReservationId: res.ID, OrderId: res.OrderID, Items: items}
	case inventory.StatusRejected:
		typ = event.InventoryRejected
		payload = &inventoryv1.StockRejected{ReservationId: res.ID, OrderId: res.OrderID, Items: items, Reason: res.RejectReason}
	case inventory.StatusReleased:
		typ = event.InventoryReleased
		payload = &inventoryv1.StockReleased{ReservationId: res.ID, OrderId: res.OrderID, Items: items}
	}
	return outbox.Event{
		Topic:            event.TopicInventory,
		AggregateType:    event.AggregateReservation,
		AggregateID:      res.OrderID,
		AggregateVersion: res.Version,
		Type:             typ,
		Payload:          payload,
	}
}

// stockAdjusted is inventory.stock_adjusted.v1 for p after an AdjustStock.
func stockAdjusted(p inventory.Product, reason string) outbox.Event {
	return outbox.Event{
		Topic:            event.TopicInventory,
		AggregateType:    event.AggregateProduct,
		AggregateID:      p.SKU,
		AggregateVersion: p.Version,
		Type:             event.InventoryStockAdjusted,
		Payload:          &inventoryv1.StockAdjusted{Sku: p.SKU, Available: p.Available, Reason: reason},
	}
}
