package payment

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// Status is a payment's place in its life cycle. The strings are the values
// stored in the payments.status column.
type Status string

// Statuses. CAPTURED → REFUNDED is the only transition; DECLINED, REFUNDED
// and VOIDED are final.
//
// VOIDED is a tombstone: a refund by order id found no payment for the
// order (a saga compensating a ProcessPayment whose outcome it never
// learned, possibly still in flight) and recorded the order's one payment
// as void, so that no ProcessPayment can capture for the order afterwards.
// Compensations are thereby absorbing. A VOIDED payment has no amount, no
// currency and no payment method: nothing was ever charged.
const (
	StatusCaptured Status = "CAPTURED"
	StatusDeclined Status = "DECLINED"
	StatusRefunded Status = "REFUNDED"
	StatusVoided   Status = "VOIDED"
)

// Input limits.
const (
	MaxMethodLen       = 255
	MaxRefundReasonLen = 500
)

// Payment is the one payment of an order: the outcome of its attempt to pay,
// captured or declined, and whether it was refunded.
//
// Fields are exported so that storage can rehydrate a Payment; the state
// changes only through NewPayment and Refund, which keep the invariants:
// Refunded is 0 unless Status is REFUNDED, then it equals Amount.Minor;
// Amount is zero (no currency) exactly when Status is VOIDED; Version grows
// by one with every change.
type Payment struct {
	ID      ID
	OrderID ID
	// CustomerID is the user the payment is for (the user the saga acted
	// for); "" for payments recorded before customers were.
	CustomerID    string
	Amount        Money
	Status        Status
	DeclineReason string
	// Refunded is the refunded amount in minor units of Amount.Currency.
	Refunded     int64
	RefundReason string
	Method       string
	// Version is the optimistic-lock version: 1 at creation.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Charge is a validated ProcessPayment request.
type Charge struct {
	OrderID ID
	Amount  Money
	Method  string
	// CustomerID is the user charged: who the calling saga acts for.
	CustomerID string
}

// NewCharge validates a ProcessPayment request. Errors wrap
// ErrInvalidArgument and name the field (order_id, amount,
// amount.currency_code, amount.amount_minor, payment_method).
func NewCharge(orderID string, amount *Money, method string) (Charge, error) {
	oid, err := parseIDField("order_id", orderID)
	if err != nil {
		return Charge{}, err
	}
	if err := validateAmount("amount", amount); err != nil {
		return Charge{}, err
	}
	switch {
	case method == "":
		return Charge{}, fieldErr("payment_method", "required")
	case len(method) > MaxMethodLen:
		return Charge{}, fieldErr("payment_method", "must be at most %d bytes", MaxMethodLen)
	case !utf8.ValidString(method):
		return Charge{}, fieldErr("payment_method", "must be valid UTF-8")
	}
	return Charge{OrderID: oid, Amount: *amount, Method: method}, nil
}

// NewPayment decides the outcome of charge under rules and returns the new
// payment at version 1: CAPTURED, or DECLINED with its reason.
func NewPayment(id ID, charge Charge, rules DeclineRules, now time.Time) Payment {
	p := Payment{
		ID:         id,
		OrderID:    charge.OrderID,
		CustomerID: charge.CustomerID,
		Amount:     charge.Amount,
		Status:     StatusCaptured,
		Method:     charge.Method,
		Version:    1,
		CreatedAt:  now,
		UpdatedAt:  now,
	}
	if reason := rules.Decide(charge.Method, charge.Amount); reason != "" {
		p.Status = StatusDeclined
		p.DeclineReason = reason
	}
	return p
}

// Matches reports whether charge asks for what p already is: the same order,
// amount and currency. A retried ProcessPayment that matches gets the stored
// payment back; one that does not is ErrAmountMismatch. A VOIDED payment
// matches every charge of its order: whatever was asked, nothing may be
// captured, and the VOIDED payment is the answer.
func (p Payment) Matches(charge Charge) bool {
	return p.OrderID == charge.OrderID && (p.Status == StatusVoided || p.Amount == charge.Amount)
}

// Void returns the VOIDED tombstone of an order that has no payment, at
// version 1, keeping the refund's reason and the customer it was for.
func Void(id, orderID ID, customerID, reason string, now time.Time) Payment {
	return Payment{
		ID:           id,
		OrderID:      orderID,
		CustomerID:   customerID,
		Status:       StatusVoided,
		RefundReason: reason,
		Version:      1,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
}

// Refund refunds a CAPTURED payment in full: it becomes REFUNDED with
// Refunded = Amount.Minor and its version grows by one; changed is true.
// Every other payment is left as it is (changed false, no error): a
// REFUNDED one was refunded already (a refund happens at most once), and a
// DECLINED or VOIDED one captured nothing, so there is nothing to refund. A
// refund is a compensation that is retried until it succeeds; reporting
// these as failures would make it retry forever.
func (p *Payment) Refund(reason string, now time.Time) (changed bool, err error) {
	switch p.Status {
	case StatusCaptured:
		p.Status = StatusRefunded
		p.Refunded = p.Amount.Minor
		p.RefundReason = reason
		p.Version++
		p.UpdatedAt = now
		return true, nil
	case StatusRefunded, StatusDeclined, StatusVoided:
		return false, nil
	default:
		return false, fmt.Errorf("payment %s: unknown status %q", p.ID, p.Status)
	}
}

// Ref names a payment by exactly one of its id or its order's id.
type Ref struct {
	// PaymentID is set when the payment is named by its own id.
	PaymentID ID
	// OrderID is set when the payment is named by its order.
	OrderID ID
}

// ByOrder reports whether r names the payment by its order.
func (r Ref) ByOrder() bool { return !r.OrderID.IsZero() }

// String returns "payment <id>" or "order <id>", for logs and errors.
func (r Ref) String() string {
	if r.ByOrder() {
		return "order " + r.OrderID.String()
	}
	return "payment " + r.PaymentID.String()
}

// NewRef validates a (payment_id, order_id) pair of which exactly one must
// be set. Errors wrap ErrInvalidArgument and name the field.
func NewRef(paymentID, orderID string) (Ref, error) {
	switch {
	case paymentID == "" && orderID == "":
		return Ref{}, fieldErr("payment_id", "exactly one of payment_id and order_id is required")
	case paymentID != "" && orderID != "":
		return Ref{}, fieldErr("order_id", "exactly one of payment_id and order_id is allowed")
	case paymentID != "":
		id, err := parseIDField("payment_id", paymentID)
		return Ref{PaymentID: id}, err
	default:
		id, err := parseIDField("order_id", orderID)
		return Ref{OrderID: id}, err
	}
}

// ValidateRefundReason checks the optional free-text reason of a refund.
func ValidateRefundReason(reason string) error {
	switch {
	case len(reason) > MaxRefundReasonLen:
		return fieldErr("reason", "must be at most %d bytes", MaxRefundReasonLen)
	case !utf8.ValidString(reason):
		return fieldErr("reason", "must be valid UTF-8")
	}
	return nil
}
