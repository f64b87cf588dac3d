package order

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/goodgo/goodgo/platform/money"
	"github.com/goodgo/goodgo/platform/sku"
)

// Limits of a PlaceOrder request.
const (
	MaxItems         = 50
	MaxQuantity      = 1000
	MaxPaymentMethod = 255
	MaxCancelReason  = 500
)

// Status is an order's place in its life cycle.
type Status string

// Statuses. PENDING is the only one that can change.
const (
	StatusPending   Status = "PENDING"
	StatusConfirmed Status = "CONFIRMED"
	StatusCancelled Status = "CANCELLED"
)

// Valid reports whether s is one of the three statuses.
func (s Status) Valid() bool {
	return s == StatusPending || s == StatusConfirmed || s == StatusCancelled
}

// Item is one line a client asks for: a SKU and a quantity, no price.
type Item struct {
	SKU      string
	Quantity int32
}

// Draft is a request to place an order, before pricing.
type Draft struct {
	CustomerID      string
	Items           []Item
	ShippingAddress Address
	PaymentMethod   string
}

// Normalize returns d with its customer id in canonical (lower-case) form
// and its address normalized; Validate expects a normalized draft.
func (d Draft) Normalize() Draft {
	d.CustomerID = strings.ToLower(strings.TrimSpace(d.CustomerID))
	d.ShippingAddress = d.ShippingAddress.Normalize()
	d.PaymentMethod = strings.TrimSpace(d.PaymentMethod)
	return d
}

// Validate checks a normalized draft and returns the first problem as an
// *Error of kind ErrInvalid naming the field, or nil.
func (d Draft) Validate() error {
	if err := ValidateID("customer_id", d.CustomerID); err != nil {
		return err
	}
	if len(d.Items) == 0 || len(d.Items) > MaxItems {
		return invalid("items", "must have 1 to "+strconv.Itoa(MaxItems)+" lines")
	}
	seen := make(map[string]int, len(d.Items))
	for i, it := range d.Items {
		field := "items[" + strconv.Itoa(i) + "]"
		if !sku.Valid(it.SKU) {
			return invalid(field+".sku", sku.Rule)
		}
		if j, dup := seen[it.SKU]; dup {
			return invalid(field+".sku", "duplicates items["+strconv.Itoa(j)+"].sku; put the total quantity on one line")
		}
		seen[it.SKU] = i
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			return invalid(field+".quantity", "must be between 1 and "+strconv.Itoa(MaxQuantity))
		}
	}
	if d.ShippingAddress == (Address{}) {
		return invalid("shipping_address", "required")
	}
	if err := d.ShippingAddress.Validate("shipping_address"); err != nil {
		return err
	}
	return text("payment_method", d.PaymentMethod, true, MaxPaymentMethod)
}

// SKUs returns the draft's SKUs in line order.
func (d Draft) SKUs() []string {
	skus := make([]string, len(d.Items))
	for i, it := range d.Items {
		skus[i] = it.SKU
	}
	return skus
}

// SameRequest reports whether o was placed from a draft equal to d: the same
// customer, lines, payment method and shipping address. It tells a retry of
// the request that created o from a different request that reuses its
// idempotency key, which must be rejected, never answered with o.
//
// The address compared is o's current one. If UpdateShippingAddress changed
// it since, a retry of the original PlaceOrder no longer matches and is
// rejected too. That can only happen when the Redis idempotency record is
// gone (otherwise the retry is replayed from Redis before it gets here) and
// the client changed the address of an order whose placement it is still
// retrying; the rejection is safe (nothing is written) and the client can
// read the order with GetOrder.
func (d Draft) SameRequest(o Order) bool {
	if d.CustomerID != o.CustomerID || d.PaymentMethod != o.PaymentMethod || d.ShippingAddress != o.ShippingAddress ||
		len(d.Items) != len(o.Lines) {
		return false
	}
	for i, it := range d.Items {
		if it.SKU != o.Lines[i].SKU || it.Quantity != o.Lines[i].Quantity {
			return false
		}
	}
	return true
}

// Price is what the catalog says one unit of a SKU costs.
type Price struct {
	Name string
	Unit Money
}

// Line is one priced line of an order.
type Line struct {
	SKU       string
	Name      string
	Quantity  int32
	UnitPrice Money
}

// Order is the order aggregate. Version is maintained by storage: it is 1
// at creation and incremented by every persisted change.
type Order struct {
	ID              string
	CustomerID      string
	Status          Status
	Lines           []Line
	Total           Money
	ShippingAddress Address
	PaymentMethod   string
	CancelReason    string
	PlacedBy        string
	Version         int64
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// Place prices a valid, normalized draft with prices (by SKU) and returns a
// new PENDING order at version 1. A SKU without a price is an ErrNotFound
// *Error naming items[i].sku; prices in an unsupported currency, in more than
// one currency, or whose total overflows are ErrFailedPrecondition.
func Place(id string, d Draft, prices map[string]Price, placedBy string, now time.Time) (Order, error) {
	o := Order{
		ID:              id,
		CustomerID:      d.CustomerID,
		Status:          StatusPending,
		Lines:           make([]Line, len(d.Items)),
		ShippingAddress: d.ShippingAddress,
		PaymentMethod:   d.PaymentMethod,
		PlacedBy:        placedBy,
		Version:         1,
		CreatedAt:       now,
		UpdatedAt:       now,
	}
	for i, it := range d.Items {
		field := "items[" + strconv.Itoa(i) + "].sku"
		p, ok := prices[it.SKU]
		if !ok {
			return Order{}, &Error{Kind: ErrNotFound, Field: field, Problem: "unknown SKU " + strconv.Quote(it.SKU)}
		}
		switch {
		case !money.Known(p.Unit.Currency):
			return Order{}, precondition(field, "priced in an unsupported currency")
		case i == 0:
			o.Total.Currency = p.Unit.Currency
		case p.Unit.Currency != o.Total.Currency:
			return Order{}, precondition("items", fmt.Sprintf("priced in more than one currency (%s, %s); place one order per currency",
				o.Total.Currency, p.Unit.Currency))
		}
		if p.Unit.Minor < 0 {
			return Order{}, precondition(field, "has a negative catalog price")
		}
		// Quantities are at most 1000, so only an absurd catalog price can
		// overflow; refuse rather than wrap around.
		if p.Unit.Minor > math.MaxInt64/int64(it.Quantity) || o.Total.Minor > math.MaxInt64-p.Unit.Minor*int64(it.Quantity) {
			return Order{}, precondition("items", "total is too large")
		}
		o.Total.Minor += p.Unit.Minor * int64(it.Quantity)
		o.Lines[i] = Line{SKU: it.SKU, Name: p.Name, Quantity: it.Quantity, UnitPrice: p.Unit}
	}
	return o, nil
}

// Change says what a transition did, so that storage knows which event to
// publish. ChangeNone means the order was already in the requested state:
// nothing to write, nothing to publish.
type Change int

// Changes.
const (
	ChangeNone Change = iota
	ChangeConfirmed
	ChangeCancelled
	ChangeShippingAddress
)

// Confirm moves a PENDING order to CONFIRMED. Confirming a CONFIRMED order
// is ChangeNone; a CANCELLED one is ErrFailedPrecondition.
func (o *Order) Confirm(now time.Time) (Change, error) {
	switch o.Status {
	case StatusConfirmed:
		return ChangeNone, nil
	case StatusPending:
		o.Status, o.UpdatedAt = StatusConfirmed, now
		return ChangeConfirmed, nil
	default:
		return ChangeNone, precondition("order_id", "order is "+string(o.Status)+" and cannot be confirmed")
	}
}

// Cancel moves a PENDING order to CANCELLED with reason. Cancelling a
// CANCELLED order is ChangeNone and keeps the first reason; a CONFIRMED one
// is ErrFailedPrecondition.
func (o *Order) Cancel(reason string, now time.Time) (Change, error) {
	switch o.Status {
	case StatusCancelled:
		return ChangeNone, nil
	case StatusPending:
		o.Status, o.CancelReason, o.UpdatedAt = StatusCancelled, reason, now
		return ChangeCancelled, nil
	default:
		return ChangeNone, precondition("order_id", "order is "+string(o.Status)+" and cannot be cancelled")
	}
}

// ChangeShippingAddress replaces the address of a PENDING order with a
// (normalized, valid) address. The same address again is ChangeNone; an
// order that is no longer PENDING is ErrFailedPrecondition.
func (o *Order) ChangeShippingAddress(a Address, now time.Time) (Change, error) {
	if o.Status != StatusPending {
		return ChangeNone, precondition("order_id", "order is "+string(o.Status)+"; the shipping address can change only while PENDING")
	}
	if o.ShippingAddress == a {
		return ChangeNone, nil
	}
	o.ShippingAddress, o.UpdatedAt = a, now
	return ChangeShippingAddress, nil
}

// ValidateCancelReason checks the free-text reason of a cancellation.
func ValidateCancelReason(reason string) error {
	return text("reason", reason, false, MaxCancelReason)
}

// ValidateID checks that id is a UUID in canonical lower-case form
// (8-4-4-4-12 hex digits); field names it in the error.
func ValidateID(field, id string) error {
	if !isUUID(id) {
		return invalid(field, "must be a UUID")
	}
	return nil
}

// NormalizeID returns id trimmed and lower-cased, the form ValidateID accepts.
func NormalizeID(id string) string { return strings.ToLower(strings.TrimSpace(id)) }

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}
