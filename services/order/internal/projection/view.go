// Package projection is the read side of orders (CQRS): a projector that
// folds the order, payment and inventory events into one denormalized view
// per order in the read database (db/orderread), the queries that read it,
// and the rebuild that replays the topics into a shadow table and swaps it
// in while the current view keeps serving.
//
// Each view row keeps, per source aggregate (the order, its payment, its
// reservation), the version of the newest event applied and the fields
// only that source writes. An event whose version is not newer than its
// source's applied version changes nothing, so redeliveries, replays and
// duplicates are harmless; and since no field is written by two sources,
// the order in which the three topics are read does not matter: an event
// of the payment read before the order's order.created is merged into a
// row that the queries hide (customer_id ”) until order.created fills it.
package projection

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
)

// Statuses as the view stores them.
const (
	StatusPending   = "PENDING"
	StatusConfirmed = "CONFIRMED"
	StatusCancelled = "CANCELLED"

	PaymentCaptured = "CAPTURED"
	PaymentDeclined = "DECLINED"
	PaymentRefunded = "REFUNDED"

	StockReserved = "RESERVED"
	StockRejected = "REJECTED"
	StockReleased = "RELEASED"
)

// Types are the event types the view is built from; the topics' other
// events (inventory.stock_adjusted.v1, about products) are skipped.
var Types = []string{
	event.OrderCreated, event.OrderConfirmed, event.OrderCancelled, event.OrderShippingAddressChanged,
	event.PaymentProcessed, event.PaymentDeclined, event.PaymentRefunded,
	event.InventoryReserved, event.InventoryRejected, event.InventoryReleased,
}

// Item is one line of an order, as stored in order_views.items.
type Item struct {
	SKU            string `json:"sku"`
	Name           string `json:"name"`
	Quantity       int32  `json:"quantity"`
	UnitPriceMinor int64  `json:"unit_price_minor"`
}

// View is one order's row of the view.
type View struct {
	OrderID      uuid.UUID
	CustomerID   string // '' until order.created is applied: hidden
	Status       string
	Items        []Item
	CurrencyCode string
	TotalMinor   int64
	CancelReason string

	PaymentStatus   string
	PaymentID       string
	PaymentReason   string
	InventoryStatus string
	ReservationID   string
	InventoryReason string

	OrderVersion     int64
	PaymentVersion   int64
	InventoryVersion int64

	CreatedAt time.Time
	UpdatedAt time.Time
}

// Visible reports whether the order's order.created has been applied.
func (v View) Visible() bool { return v.CustomerID != "" }

// SagaOutcome says how the order saga ended, from the view's fields: ""
// while PENDING, COMPLETED, COMPENSATED (cancelled after a step succeeded
// and was undone) or REJECTED (cancelled with nothing to undo).
func (v View) SagaOutcome() string {
	switch v.Status {
	case StatusConfirmed:
		return "COMPLETED"
	case StatusCancelled:
		if v.PaymentStatus == PaymentRefunded || v.InventoryStatus == StockReleased {
			return "COMPENSATED"
		}
		return "REJECTED"
	default:
		return ""
	}
}

// source is the aggregate an event comes from: each owns its fields of the
// view and its applied version.
type source int

const (
	sourceOrder source = iota + 1
	sourcePayment
	sourceInventory
)

// Change is an event reduced to what the view needs: which order, which
// source and version, and how it changes the row.
type Change struct {
	Event   inbox.Event
	OrderID uuid.UUID
	source  source
	apply   func(*View)
}

// ErrMalformed marks an event that can never be applied: its payload does
// not decode or names no valid order. The projector parks it.
var ErrMalformed = errors.New("malformed event")

// Decode reduces ev to a Change. Errors wrap ErrMalformed.
func Decode(ev inbox.Event) (Change, error) {
	c := Change{Event: ev}
	var msg proto.Message
	switch ev.Type {
	case event.OrderCreated:
		m := &orderv1.OrderCreated{}
		msg, c.source = m, sourceOrder
		c.apply = func(v *View) {
			v.CustomerID = m.GetCustomerId()
			if v.Status == "" {
				v.Status = StatusPending
			}
			v.Items = items(m.GetItems())
			v.CurrencyCode = m.GetTotal().GetCurrencyCode()
			v.TotalMinor = m.GetTotal().GetAmountMinor()
			v.CreatedAt = ev.OccurredAt
		}
	case event.OrderConfirmed:
		m := &orderv1.OrderConfirmed{}
		msg, c.source = m, sourceOrder
		c.apply = func(v *View) { v.Status = StatusConfirmed }
	case event.OrderCancelled:
		m := &orderv1.OrderCancelled{}
		msg, c.source = m, sourceOrder
		c.apply = func(v *View) { v.Status, v.CancelReason = StatusCancelled, m.GetReason() }
	case event.OrderShippingAddressChanged:
		// The address is personal data the view does not keep; the event
		// still moves the order's version, which read-your-writes waits on.
		msg, c.source = &orderv1.OrderShippingAddressChanged{}, sourceOrder
		c.apply = func(*View) {}
	case event.PaymentProcessed:
		msg, c.source, c.apply = payment(&paymentv1.PaymentProcessed{}, PaymentCaptured)
	case event.PaymentDeclined:
		msg, c.source, c.apply = payment(&paymentv1.PaymentDeclined{}, PaymentDeclined)
	case event.PaymentRefunded:
		msg, c.source, c.apply = payment(&paymentv1.PaymentRefunded{}, PaymentRefunded)
	case event.InventoryReserved:
		msg, c.source, c.apply = stock(&inventoryv1.StockReserved{}, StockReserved)
	case event.InventoryRejected:
		msg, c.source, c.apply = stock(&inventoryv1.StockRejected{}, StockRejected)
	case event.InventoryReleased:
		msg, c.source, c.apply = stock(&inventoryv1.StockReleased{}, StockReleased)
	default:
		return c, fmt.Errorf("%w: event type %q is not projected", ErrMalformed, ev.Type)
	}
	if ev.ContentType != "" && ev.ContentType != event.ContentTypeProtobuf {
		return c, fmt.Errorf("%w: content type %q", ErrMalformed, ev.ContentType)
	}
	if err := proto.Unmarshal(ev.Payload, msg); err != nil {
		return c, fmt.Errorf("%w: %s payload: %w", ErrMalformed, ev.Type, err)
	}
	if ev.OccurredAt.IsZero() {
		return c, fmt.Errorf("%w: no occurred-at", ErrMalformed)
	}
	if ev.AggregateVersion <= 0 {
		return c, fmt.Errorf("%w: aggregate version %d", ErrMalformed, ev.AggregateVersion)
	}
	// Every projected payload names its order.
	orderID := msg.ProtoReflect().Get(msg.ProtoReflect().Descriptor().Fields().ByName("order_id")).String()
	id, err := uuid.Parse(orderID)
	if err != nil {
		return c, fmt.Errorf("%w: order_id %q: %w", ErrMalformed, orderID, err)
	}
	if ev.AggregateType == event.AggregateOrder && ev.AggregateID != id.String() {
		return c, fmt.Errorf("%w: aggregate id %q is not the payload's order %s", ErrMalformed, ev.AggregateID, id)
	}
	c.OrderID = id
	if c.source == sourceOrder && ev.Type == event.OrderCreated {
		if m := msg.(*orderv1.OrderCreated); m.GetCustomerId() == "" {
			return c, fmt.Errorf("%w: order.created without customer_id", ErrMalformed)
		}
	}
	return c, nil
}

// paymentEvent and stockEvent are what every event of the payment and of
// the reservation names: the payment or the reservation.
type (
	paymentEvent interface {
		proto.Message
		GetPaymentId() string
	}
	stockEvent interface {
		proto.Message
		GetReservationId() string
	}
)

// payment is the change of a payment event m: the payment's status, id and
// reason (declines and refunds give one; a capture clears it). apply reads
// m when it runs, after Decode has unmarshaled the payload into m.
func payment(m paymentEvent, status string) (proto.Message, source, func(*View)) {
	return m, sourcePayment, func(v *View) {
		v.PaymentStatus, v.PaymentID, v.PaymentReason = status, m.GetPaymentId(), reason(m)
	}
}

// stock is the change of a reservation event m, like payment's (rejections
// give a reason).
func stock(m stockEvent, status string) (proto.Message, source, func(*View)) {
	return m, sourceInventory, func(v *View) {
		v.InventoryStatus, v.ReservationID, v.InventoryReason = status, m.GetReservationId(), reason(m)
	}
}

// reason is m's reason, "" for an event that gives none.
func reason(m proto.Message) string {
	if r, ok := m.(interface{ GetReason() string }); ok {
		return r.GetReason()
	}
	return ""
}

func items(in []*commonv1.LineItem) []Item {
	out := make([]Item, len(in))
	for i, l := range in {
		out[i] = Item{SKU: l.GetSku(), Name: l.GetName(), Quantity: l.GetQuantity(), UnitPriceMinor: l.GetUnitPrice().GetAmountMinor()}
	}
	return out
}

// Apply applies c to v and reports whether it changed anything: an event
// not newer than the applied version of its source is ignored (a
// redelivery, or an older event read after a newer one).
func (c Change) Apply(v *View) bool {
	var applied *int64
	switch c.source {
	case sourceOrder:
		applied = &v.OrderVersion
	case sourcePayment:
		applied = &v.PaymentVersion
	case sourceInventory:
		applied = &v.InventoryVersion
	default:
		return false
	}
	if c.Event.AggregateVersion <= *applied {
		return false
	}
	c.apply(v)
	*applied = c.Event.AggregateVersion
	if v.CreatedAt.IsZero() {
		// A held row (payment before order.created) needs a time; the
		// order's own replaces it.
		v.CreatedAt = c.Event.OccurredAt
	}
	if c.Event.OccurredAt.After(v.UpdatedAt) {
		v.UpdatedAt = c.Event.OccurredAt
	}
	return true
}
