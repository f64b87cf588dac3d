// Package inventory is the stock domain: catalog products, stock
// reservations, the rules for valid requests and the reservation life cycle.
// It imports only the standard library; storage and transport adapt to it.
package inventory

import (
	"errors"
	"fmt"
	"time"

	"github.com/goodgo/goodgo/platform/money"
	"github.com/goodgo/goodgo/platform/sku"
)

// Limits of a request. They bound the work and the transaction size one call
// can cause; anything outside them is rejected before anything is written.
const (
	// MaxItems is the most lines one reservation may have.
	MaxItems = 50
	// MaxQuantity is the most units of one SKU one reservation may hold.
	MaxQuantity = 1000
	// MaxAvailable is the most units AdjustStock may set. It keeps
	// available+reserved far from int64 overflow.
	MaxAvailable = 1_000_000_000
	// MaxReasonLen is the longest AdjustStock reason, in bytes.
	MaxReasonLen = 500
	// MaxSKUs is the most SKUs one GetProducts call may name.
	MaxSKUs = 500
	// DefaultPageSize and MaxPageSize bound a catalog page.
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// RejectInsufficientStock is the reject reason of a reservation that could
// not take every item.
const RejectInsufficientStock = "insufficient_stock"

// Sentinel errors. Adapters wrap them; the transport maps each class to one
// status code.
var (
	// ErrInvalidArgument classifies a malformed request (see FieldError).
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound classifies a reference to an unknown SKU or order.
	ErrNotFound = errors.New("not found")
	// ErrPermissionDenied reports a caller that may not run the request
	// (AdjustStock by a caller that is not an inventory admin).
	ErrPermissionDenied = errors.New("permission denied")
	// ErrReservationMismatch reports a ReserveStock for an order that already
	// has a reservation with different items: the order's one reservation
	// cannot be changed, and silently returning it would hide the mismatch.
	ErrReservationMismatch = errors.New("order already has a reservation with different items")
	// ErrStockOutOfRange reports a delta that would take a product's
	// available units below 0 or above MaxAvailable: nothing changed.
	ErrStockOutOfRange = errors.New("stock would leave the range 0..MaxAvailable")
)

// FieldError is a request field that breaks a rule. Its message names the
// field as the API spells it ("items[2].quantity") and is safe to show to
// the client.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Is makes errors.Is(err, ErrInvalidArgument) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidArgument }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// NotFoundError names the request field that refers to something unknown.
// Its message is safe to show to the client.
type NotFoundError struct {
	Field string
	Value string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s: %q not found", e.Field, e.Value) }

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// NotFound returns a NotFoundError for field with value.
func NotFound(field, value string) error { return &NotFoundError{Field: field, Value: value} }

// Money is an amount in the minor unit of an ISO 4217 currency.
type Money = money.Money

// Product is a catalog entry with its stock. Available units can be
// reserved; Reserved units are held by reservations. Version increases with
// every change of the row, stock movements included.
type Product struct {
	SKU       string
	Name      string
	UnitPrice Money
	Available int64
	Reserved  int64
	Version   int64
	UpdatedAt time.Time
}

// Validate checks a product read from storage, so that a corrupt row fails
// loudly instead of reaching a client.
func (p Product) Validate() error {
	switch {
	case !sku.Valid(p.SKU):
		return fmt.Errorf("product %q: malformed SKU", p.SKU)
	case !money.Known(p.UnitPrice.Currency):
		return fmt.Errorf("product %q: unknown currency %q", p.SKU, p.UnitPrice.Currency)
	case p.UnitPrice.Minor < 0, p.Available < 0, p.Reserved < 0, p.Version < 1:
		return fmt.Errorf("product %q: negative price, stock or version", p.SKU)
	}
	return nil
}
