// Package audit checks GoodGo's cross-service invariants through the
// services' gRPC APIs, never their databases: Collect reads a Snapshot as
// an operator (the sagas list the orders to audit; each order, its payment
// and its reservation are read by id; the catalog gives the stock), and
// Check returns every Violation of it, each with its kind and the ids
// involved. Metrics exports the outcome of periodic runs to Prometheus.
//
// The invariants (DESIGN.md §6):
//
//   - every order is CONFIRMED or CANCELLED once its saga has ended or its
//     deadline has passed, and its saga ended as its order did;
//   - CONFIRMED ⇔ the order's payment is CAPTURED for its total and not
//     refunded, and its stock is RESERVED line for line;
//   - CANCELLED ⇒ no net charge (no payment, DECLINED, VOIDED or fully
//     REFUNDED) and no held stock (no reservation, REJECTED or RELEASED);
//   - captured − refunded = the CONFIRMED orders' totals, per currency;
//   - no SKU's stock is negative, and each SKU's reserved stock is the sum
//     of the CONFIRMED orders' quantities.
//
// The system may be running while it is audited. Orders whose saga is
// still running are left out (they are reported only once overdue), and
// the per-order checks and the money balance look only at orders whose
// saga has ended, which no later step changes. A SKU's reserved count is
// global, so its balance is checked only when the snapshot is Quiescent:
// no saga running while it was read and none started meanwhile.
package audit

import "time"

// The statuses and states, as the APIs' enum names without their prefix.
const (
	OrderPending   = "PENDING"
	OrderConfirmed = "CONFIRMED"
	OrderCancelled = "CANCELLED"

	PaymentCaptured = "CAPTURED"
	PaymentDeclined = "DECLINED"
	PaymentRefunded = "REFUNDED"
	PaymentVoided   = "VOIDED"

	ReservationReserved = "RESERVED"
	ReservationRejected = "REJECTED"
	ReservationReleased = "RELEASED"

	SagaRunning      = "RUNNING"
	SagaCompensating = "COMPENSATING"
	SagaCompleted    = "COMPLETED"
	SagaCompensated  = "COMPENSATED"
	SagaParked       = "PARKED"
)

// Snapshot is what the services answered, read at about TakenAt.
type Snapshot struct {
	TakenAt time.Time
	// Sagas are the order sagas, by order id (their correlation id): one
	// each, unless something started a saga twice.
	Sagas map[string][]*Saga
	// Orders, Payments and Reservations are keyed by order id; an absent
	// entry is one the service does not know (NOT_FOUND). The payment and
	// reservation of an order whose saga is still running are not read.
	Orders       map[string]*Order
	Payments     map[string]*Payment
	Reservations map[string]*Reservation
	// Views are the read model's views of the settled orders, by order id
	// (none when the auditor has no read-model client).
	Views map[string]*View
	// Products is the whole catalog, by SKU.
	Products map[string]*Product
	// Quiescent says no saga was running while the snapshot was read and
	// none was started meanwhile, so that global counters (a SKU's reserved
	// stock) can be compared with the sum over orders.
	Quiescent bool
}

// Saga is one order saga.
type Saga struct {
	ID, OrderID, State, FailureReason string
	Deadline                          time.Time
}

// Order is one order, as the order service has it.
type Order struct {
	ID, Status, Currency, CancelReason string
	Total                              int64
	// Lines are the ordered quantities by SKU.
	Lines map[string]int64
	// Version is the order aggregate's version.
	Version int64
}

// View is one order as the read model (CQRS) has it.
type View struct {
	OrderID, Status, Currency, CancelReason string
	Total, Version                          int64
	PaymentStatus, InventoryStatus          string
	// Missing, when not "", says why the read model has no view of the
	// order at the write side's version.
	Missing string
}

// Payment is one order's payment.
type Payment struct {
	ID, OrderID, Status, Currency, DeclineReason string
	Amount, Refunded                             int64
}

// Reservation is one order's stock reservation.
type Reservation struct {
	ID, OrderID, Status, RejectReason string
	// Lines are the reserved (or, REJECTED, requested) quantities by SKU.
	Lines map[string]int64
}

// Product is one SKU's stock.
type Product struct {
	SKU                 string
	Available, Reserved int64
}

// terminal reports whether a saga in state s has ended for good.
func terminal(s string) bool { return s == SagaCompleted || s == SagaCompensated }

// running reports whether a saga in state s is still moving.
func running(s string) bool { return s == SagaRunning || s == SagaCompensating }
