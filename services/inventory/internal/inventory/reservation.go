package inventory

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// Status is a reservation's place in its life cycle:
//
//	RESERVED ──release──▶ RELEASED
//	REJECTED (terminal: nothing was taken)
//	RELEASED without items (a tombstone: released before it was reserved)
//
// A reservation is created RESERVED or REJECTED in one transaction; only a
// RESERVED one holds stock, and it gives it back at most once. A release of
// an order that has no reservation yet creates the tombstone, so that a
// reservation still in flight cannot take stock after its compensation ran
// (compensations are absorbing); see Reservation.Tombstone.
type Status string

// The reservation statuses, spelled as stored.
const (
	StatusReserved Status = "RESERVED"
	StatusRejected Status = "REJECTED"
	StatusReleased Status = "RELEASED"
)

// ParseStatus returns the Status spelled s.
func ParseStatus(s string) (Status, error) {
	switch st := Status(s); st {
	case StatusReserved, StatusRejected, StatusReleased:
		return st, nil
	}
	return "", fmt.Errorf("unknown reservation status %q", s)
}

// HoldsStock reports whether a reservation in this status holds stock, which
// a release must give back.
func (s Status) HoldsStock() bool { return s == StatusReserved }

// Item is one line of a reservation: a SKU and a number of units.
type Item struct {
	SKU      string
	Quantity int32
}

// Reservation is one order's stock reservation. Items are in SKU order. For
// a REJECTED reservation they are the requested lines, none of them held;
// a tombstone has none.
type Reservation struct {
	ID           string
	OrderID      string
	Status       Status
	Items        []Item
	RejectReason string
	// Version counts committed changes: 1 when created, 2 once released. A
	// tombstone is created RELEASED, at version 1.
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// Tombstone reports whether r records a release that came before any
// reservation of its order: RELEASED without items. It holds no stock and
// never will; a later ReserveStock for the order returns it unchanged.
func (r Reservation) Tombstone() bool { return r.Status == StatusReleased && len(r.Items) == 0 }

// SameItems reports whether the reservation holds exactly items, which must
// be in SKU order (as a ReserveRequest's are).
func (r Reservation) SameItems(items []Item) bool { return slices.Equal(r.Items, items) }

// ReserveRequest is a validated ReserveStock: a canonical order id and at
// least one line, at most MaxItems, each SKU once, in SKU order. SKU order
// is the lock order every writer follows, so concurrent reservations of
// overlapping SKUs cannot deadlock.
type ReserveRequest struct {
	OrderID string
	Items   []Item
}

// NewReserveRequest validates a ReserveStock request. Errors are FieldErrors
// naming the field as the API spells it; items keep their request indexes in
// messages even though the result is sorted.
func NewReserveRequest(orderID string, items []Item) (ReserveRequest, error) {
	id, err := ParseUUID("order_id", orderID)
	if err != nil {
		return ReserveRequest{}, err
	}
	switch {
	case len(items) == 0:
		return ReserveRequest{}, invalid("items", "must not be empty")
	case len(items) > MaxItems:
		return ReserveRequest{}, invalid("items", "must have at most %d entries (got %d)", MaxItems, len(items))
	}
	seen := make(map[string]int, len(items))
	for i, it := range items {
		field := fmt.Sprintf("items[%d]", i)
		if err := ValidateSKU(field+".sku", it.SKU); err != nil {
			return ReserveRequest{}, err
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			return ReserveRequest{}, invalid(field+".quantity", "must be between 1 and %d (got %d)", MaxQuantity, it.Quantity)
		}
		if j, dup := seen[it.SKU]; dup {
			return ReserveRequest{}, invalid(field+".sku", "duplicates items[%d].sku", j)
		}
		seen[it.SKU] = i
	}
	sorted := slices.Clone(items)
	slices.SortFunc(sorted, func(a, b Item) int { return strings.Compare(a.SKU, b.SKU) })
	return ReserveRequest{OrderID: id, Items: sorted}, nil
}

// ItemIndex returns the index in the original request of the line for sku,
// or -1. It names the offending field when storage reports an unknown SKU.
func ItemIndex(items []Item, sku string) int {
	return slices.IndexFunc(items, func(it Item) bool { return it.SKU == sku })
}

// Adjustment is a validated AdjustStock: set the available units of SKU to
// Available if the product is still at ExpectedVersion.
type Adjustment struct {
	SKU       string
	Available int64
	Reason    string
	// ExpectedVersion is the version the client read, recovered from its
	// verified version token by the caller.
	ExpectedVersion int64
}

// NewAdjustment validates the fields of an AdjustStock request; the caller
// sets ExpectedVersion once it has verified the version token.
func NewAdjustment(sku string, available int64, reason string) (Adjustment, error) {
	if err := ValidateSKU("sku", sku); err != nil {
		return Adjustment{}, err
	}
	if available < 0 || available > MaxAvailable {
		return Adjustment{}, invalid("available", "must be between 0 and %d (got %d)", MaxAvailable, available)
	}
	if err := ValidateReason(reason); err != nil {
		return Adjustment{}, err
	}
	return Adjustment{SKU: sku, Available: available, Reason: reason}, nil
}

// StockDelta is a validated AdjustStock by delta: add Delta units to the
// available ones of SKU (remove them when negative), whatever the product
// holds when the update runs.
type StockDelta struct {
	SKU    string
	Delta  int64
	Reason string
	// ExpectedVersion, if nonzero, is the version the client read (from its
	// verified version token): the delta then applies only at that version,
	// like an Adjustment. Zero lets the server pick how it writes.
	ExpectedVersion int64
	// RequestKey identifies the request (its hashed idempotency key) so that
	// storage can refuse to apply it twice; "" when the call is unguarded.
	RequestKey string
}

// NewStockDelta validates the fields of an AdjustStock by delta.
func NewStockDelta(sku string, delta int64, reason string) (StockDelta, error) {
	if err := ValidateSKU("sku", sku); err != nil {
		return StockDelta{}, err
	}
	if delta == 0 || delta < -MaxAvailable || delta > MaxAvailable {
		return StockDelta{}, invalid("delta", "must be nonzero and between %d and %d (got %d)", -MaxAvailable, MaxAvailable, delta)
	}
	if err := ValidateReason(reason); err != nil {
		return StockDelta{}, err
	}
	return StockDelta{SKU: sku, Delta: delta, Reason: reason}, nil
}

// Apply returns the available units after the delta, or an error wrapping
// ErrStockOutOfRange when they would fall below 0 or exceed MaxAvailable.
func (d StockDelta) Apply(available int64) (int64, error) {
	after := available + d.Delta
	if after < 0 || after > MaxAvailable {
		return 0, fmt.Errorf("%s: %d available %+d: %w", d.SKU, available, d.Delta, ErrStockOutOfRange)
	}
	return after, nil
}

// ValidateReason checks an AdjustStock reason: optional, at most
// MaxReasonLen bytes of printable UTF-8 (it ends up in events and logs).
func ValidateReason(reason string) error {
	if len(reason) > MaxReasonLen {
		return invalid("reason", "must be at most %d bytes (got %d)", MaxReasonLen, len(reason))
	}
	if !printable(reason) {
		return invalid("reason", "must be printable UTF-8")
	}
	return nil
}
