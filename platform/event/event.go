// Package event fixes the event contract shared by writers (outbox), the
// relay and consumers: topics, event type names, Kafka header names and the
// payload content type. DESIGN.md "Events" is the prose of this file.
package event

// Topics: one per aggregate family; the message key is the aggregate id, so
// all events of one aggregate land in one partition, in order.
const (
	TopicOrder     = "goodgo.order.events"
	TopicPayment   = "goodgo.payment.events"
	TopicInventory = "goodgo.inventory.events"
)

// Topics lists every topic the system publishes to.
var Topics = []string{TopicOrder, TopicPayment, TopicInventory}

// Aggregate types.
const (
	AggregateOrder       = "order"
	AggregatePayment     = "payment"
	AggregateReservation = "reservation"
	AggregateProduct     = "product"
)

// Event types carry a version suffix; a breaking payload change is a new type.
const (
	OrderCreated                = "order.created.v1"
	OrderConfirmed              = "order.confirmed.v1"
	OrderCancelled              = "order.cancelled.v1"
	OrderShippingAddressChanged = "order.shipping_address_changed.v1"
	PaymentProcessed            = "payment.processed.v1"
	PaymentDeclined             = "payment.declined.v1"
	PaymentRefunded             = "payment.refunded.v1"
	InventoryReserved           = "inventory.reserved.v1"
	InventoryRejected           = "inventory.rejected.v1"
	InventoryReleased           = "inventory.released.v1"
	InventoryStockAdjusted      = "inventory.stock_adjusted.v1"
)

// Kafka header names of the event envelope.
const (
	HeaderEventID          = "event-id"
	HeaderEventType        = "event-type"
	HeaderAggregateType    = "aggregate-type"
	HeaderAggregateID      = "aggregate-id"
	HeaderAggregateVersion = "aggregate-version"
	HeaderOccurredAt       = "occurred-at" // RFC 3339 with nanoseconds, UTC
	HeaderTraceparent      = "traceparent"
	HeaderTracestate       = "tracestate"
	HeaderContentType      = "content-type"
)

// ContentTypeProtobuf is the payload encoding: binary protobuf of the message
// named by the event type (see proto/goodgo/*/v1/events.proto).
const ContentTypeProtobuf = "application/x-protobuf"
