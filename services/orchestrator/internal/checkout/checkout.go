// Package checkout is the order saga: the saga definition that takes an
// order placed by a customer (order.created.v1) to CONFIRMED — payment
// captured, stock reserved — or, when a step fails for good, to CANCELLED
// with its stock released and its payment refunded, in that order.
//
// The steps reach the payment, inventory and order services through the
// small interfaces below (implemented over gRPC in internal/peers),
// always with the idempotency key of the step, so a step repeated after a
// crash acts once, and always acting for the user who placed the order:
// the context carries a caller.Delegation of that user with the saga's
// permissions, which the gRPC client turns into a signed on-behalf-of
// assertion the services verify.
package checkout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/saga"
)

// PermPlaceOrder is the permission the saga acts with: the user's placing
// an order lets the saga charge, reserve, confirm and cancel for them.
const PermPlaceOrder = "orders.place"

// Permissions are what the order saga needs its initiator to grant; they
// are recorded in each saga's context and sent with every step call.
var Permissions = []string{PermPlaceOrder}

// SagaType is the saga definition's name, stored with every instance.
const SagaType = "order_checkout"

// Step names: in idempotency keys ("saga:<id>:payment"), spans
// (saga.step.payment) and the saga's step history.
const (
	StepOrder     = "order"
	StepPayment   = "payment"
	StepInventory = "inventory"
	StepConfirm   = "confirm"
)

// Item is one SKU and quantity of an order.
type Item struct {
	SKU      string `json:"sku"`
	Quantity int32  `json:"quantity"`
}

// Order is the saga context: what the steps need to know about the order.
// It holds a payment method token and is therefore stored encrypted.
type Order struct {
	OrderID       string `json:"order_id"`
	CustomerID    string `json:"customer_id"`
	AmountMinor   int64  `json:"amount_minor"`
	Currency      string `json:"currency"`
	PaymentMethod string `json:"payment_method"`
	Items         []Item `json:"items"`
	// PlacedBy is the user who placed the order; the saga acts for them.
	PlacedBy string `json:"placed_by"`
	// Permissions are what PlacedBy lets the saga do for them (the saga's
	// Permissions when it started). Sagas started before permissions were
	// recorded have none and act with the saga's Permissions.
	Permissions []string `json:"permissions,omitempty"`
}

// actor is who the saga's calls act for, and with what permissions.
func (o Order) actor() caller.Delegation {
	perms := o.Permissions
	if len(perms) == 0 {
		perms = Permissions
	}
	return caller.Delegation{User: o.PlacedBy, Permissions: perms}
}

// load decodes the saga context and returns ctx acting for the order's
// user: the step's calls carry that user's on-behalf-of assertion.
func load(ctx context.Context, x *saga.Execution) (context.Context, Order, error) {
	o, err := Unmarshal(x.Data)
	if err != nil {
		return ctx, Order{}, err
	}
	return caller.WithDelegation(ctx, o.actor()), o, nil
}

// ErrInvalidOrder reports an order the saga cannot run: retrying the event
// will not help.
var ErrInvalidOrder = errors.New("checkout: invalid order")

// Validate checks that o has what every step needs.
func (o Order) Validate() error {
	var problems []string
	if o.OrderID == "" {
		problems = append(problems, "order_id is empty")
	}
	if o.AmountMinor < 0 {
		problems = append(problems, "amount is negative")
	}
	if o.Currency == "" {
		problems = append(problems, "currency is empty")
	}
	if len(o.Items) == 0 {
		problems = append(problems, "no items")
	}
	for _, it := range o.Items {
		if it.SKU == "" || it.Quantity <= 0 {
			problems = append(problems, fmt.Sprintf("item %q x %d is invalid", it.SKU, it.Quantity))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w %s: %s", ErrInvalidOrder, o.OrderID, strings.Join(problems, "; "))
	}
	return nil
}

// Marshal encodes o as the saga context.
func (o Order) Marshal() ([]byte, error) {
	b, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("checkout: encode order: %w", err)
	}
	return b, nil
}

// Unmarshal decodes a saga context written by Marshal.
func Unmarshal(b []byte) (Order, error) {
	var o Order
	if err := json.Unmarshal(b, &o); err != nil {
		return Order{}, saga.Permanent(fmt.Errorf("checkout: decode saga context: %w", err))
	}
	return o, nil
}

// Payment is the outcome of a charge.
type Payment struct {
	// Declined reports a business refusal ("card_declined"), with Reason.
	Declined bool
	Reason   string
}

// Reservation is the outcome of a stock reservation.
type Reservation struct {
	// Rejected reports that some item is short ("insufficient_stock").
	Rejected bool
	Reason   string
}

// Payments is the payment service as the saga uses it. Every method takes
// the step's idempotency key. An error wrapped with saga.Permanent is a
// documented refusal (the call did nothing); any other error leaves the
// call's outcome unknown (it may have taken effect): the engine retries it
// with the same key, or compensates the step. The same holds for Inventory
// and Orders.
type Payments interface {
	// Charge captures o's amount with o's payment method.
	Charge(ctx context.Context, key string, o Order) (Payment, error)
	// Refund refunds the order's captured payment in full.
	Refund(ctx context.Context, key, orderID, reason string) error
}

// Inventory is the inventory service as the saga uses it.
type Inventory interface {
	// Reserve reserves every item of the order, or none.
	Reserve(ctx context.Context, key, orderID string, items []Item) (Reservation, error)
	// Release returns what the order reserved.
	Release(ctx context.Context, key, orderID string) error
}

// Orders is the order service as the saga uses it.
type Orders interface {
	// Confirm moves the order to CONFIRMED.
	Confirm(ctx context.Context, key, orderID string) error
	// Cancel moves the order to CANCELLED with reason.
	Cancel(ctx context.Context, key, orderID, reason string) error
}

// Errors of business failures, wrapped with saga.Permanent by the steps.
var (
	ErrPaymentDeclined   = errors.New("payment declined")
	ErrInsufficientStock = errors.New("insufficient stock")
)

// Definition returns the order saga:
//
//	order      (nothing to do: the order exists)   undo: CancelOrder(reason)
//	payment    ProcessPayment; DECLINED fails     undo: RefundPayment(reason)
//	inventory  ReserveStock; REJECTED fails       undo: ReleaseStock
//	confirm    ConfirmOrder (pivot: after it starts, only forward)
//
// so that a failure undoes, in order, the reservation, the payment and the
// order. A refused step (DECLINED, REJECTED) is not undone; a step whose
// outcome is unknown (an Internal error, a timeout) is, by its undo alone:
// RefundPayment and ReleaseStock of an order that has no payment or
// reservation record it VOIDED or RELEASED, so a charge or reservation
// still in flight takes nothing. ConfirmOrder is retried until its outcome
// is known; only its refusal (the order is no longer PENDING) undoes the
// steps before it.
func Definition(p Payments, inv Inventory, o Orders) *saga.Definition {
	return &saga.Definition{
		Name: SagaType,
		Steps: saga.Sequence(
			saga.Step{
				Name: StepOrder,
				Compensate: func(ctx context.Context, x *saga.Execution) error {
					ctx, ord, err := load(ctx, x)
					if err != nil {
						return err
					}
					return o.Cancel(ctx, x.IdempotencyKey(), ord.OrderID, Reason(x.FailureReason))
				},
			},
			saga.Step{
				Name: StepPayment,
				Action: func(ctx context.Context, x *saga.Execution) error {
					ctx, ord, err := load(ctx, x)
					if err != nil {
						return err
					}
					res, err := p.Charge(ctx, x.IdempotencyKey(), ord)
					if err != nil {
						return err
					}
					if res.Declined {
						return saga.Permanent(fmt.Errorf("%w: %s", ErrPaymentDeclined, res.Reason))
					}
					return nil
				},
				Compensate: func(ctx context.Context, x *saga.Execution) error {
					ctx, ord, err := load(ctx, x)
					if err != nil {
						return err
					}
					return p.Refund(ctx, x.IdempotencyKey(), ord.OrderID, Reason(x.FailureReason))
				},
			},
			saga.Step{
				Name: StepInventory,
				Action: func(ctx context.Context, x *saga.Execution) error {
					ctx, ord, err := load(ctx, x)
					if err != nil {
						return err
					}
					res, err := inv.Reserve(ctx, x.IdempotencyKey(), ord.OrderID, ord.Items)
					if err != nil {
						return err
					}
					if res.Rejected {
						return saga.Permanent(fmt.Errorf("%w: %s", ErrInsufficientStock, res.Reason))
					}
					return nil
				},
				Compensate: func(ctx context.Context, x *saga.Execution) error {
					ctx, ord, err := load(ctx, x)
					if err != nil {
						return err
					}
					return inv.Release(ctx, x.IdempotencyKey(), ord.OrderID)
				},
			},
			saga.Step{
				Name:  StepConfirm,
				Pivot: true, // a confirmed order is never cancelled, so never undone
				Action: func(ctx context.Context, x *saga.Execution) error {
					ctx, ord, err := load(ctx, x)
					if err != nil {
						return err
					}
					return o.Confirm(ctx, x.IdempotencyKey(), ord.OrderID)
				},
			},
		),
	}
}

// maxReason bounds the reasons sent with cancellations and refunds (the
// services accept 500 characters).
const maxReason = 200

// AbortPrefix starts the failure reason of a saga an operator aborted; the
// operator's own words follow and are passed on to the order.
const AbortPrefix = "aborted by operator "

// Reason turns a saga failure reason into the reason given to the order
// and payment services, which the customer reads (GetOrder's
// cancel_reason). Failure reasons carry internal error text (addresses,
// RPC errors), so only a fixed vocabulary goes out: the business refusal
// with its code, a timeout, an operator's words, or a generic text. It is a
// pure function of the stored failure reason, so every attempt of a
// compensation sends the same request under its idempotency key.
func Reason(failure string) string {
	switch {
	case strings.Contains(failure, ErrPaymentDeclined.Error()):
		return withCode("payment declined", failure, ErrPaymentDeclined.Error()+": ")
	case strings.Contains(failure, ErrInsufficientStock.Error()):
		return "insufficient stock"
	case strings.Contains(failure, "saga deadline exceeded"):
		return "the order could not be completed in time"
	case strings.HasPrefix(failure, AbortPrefix):
		return printable(failure)
	default:
		return "the order could not be completed"
	}
}

// withCode appends the refusal code that follows marker in failure
// ("card_declined"), if it is a plain code.
func withCode(text, failure, marker string) string {
	_, rest, ok := strings.Cut(failure, marker)
	if !ok {
		return text
	}
	code, _, _ := strings.Cut(rest, " ")
	if code == "" || strings.IndexFunc(code, func(r rune) bool { return r != '_' && (r < 'a' || r > 'z') }) >= 0 {
		return text
	}
	return text + " (" + code + ")"
}

// printable replaces control characters and bounds the length.
func printable(s string) string {
	r := strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if utf8.RuneCountInString(r) > maxReason {
		r = string([]rune(r)[:maxReason-1]) + "…"
	}
	return r
}

// Authorizer decides, before every forward step, whether the user who
// placed the order may still have the saga act for them: the user is the
// verified subject of the token PlaceOrder was called with (a saga started
// by nobody is refused), the saga context must grant every permission of
// Permissions, and the user must not be on Deny. A refusal fails the step
// permanently, and the saga compensates: the order is cancelled, its
// payment refunded and its stock released. Compensations are never
// refused — they only undo what the user was allowed to do.
//
// Revoking a user mid-saga (adding them to SAGA_DENY_USERS and restarting
// the orchestrators) therefore stops their running sagas at the next
// forward step; a saga that has passed its pivot (ConfirmOrder) completes.
// The callees check too: each step call carries an on-behalf-of assertion
// for the user, which they verify (the orchestrator's certificate, the
// assertion, its permission); the order service also matches the user
// against the order's placer, and payment records the user as the
// payment's customer.
type Authorizer struct {
	// Deny lists blocked user ids (SAGA_DENY_USERS).
	Deny map[string]bool
}

// ErrNotAllowed is the refusal of an Authorizer.
var ErrNotAllowed = errors.New("not allowed to place orders")

// Authorize implements saga.Options.Authorize.
func (a Authorizer) Authorize(_ context.Context, x *saga.Execution) error {
	o, err := Unmarshal(x.Data)
	if err != nil {
		return err
	}
	switch user := strings.TrimSpace(x.StartedBy); {
	case user == "":
		return fmt.Errorf("%w: no user started the saga", ErrNotAllowed)
	case user != o.PlacedBy:
		return fmt.Errorf("%w: the saga was started by %s, not by the order's user", ErrNotAllowed, user)
	case a.Deny[user]:
		return fmt.Errorf("%w: user %s is blocked", ErrNotAllowed, user)
	}
	for _, p := range Permissions {
		if !slices.Contains(o.actor().Permissions, p) {
			return fmt.Errorf("%w: the saga context does not grant %s", ErrNotAllowed, p)
		}
	}
	return nil
}
