// Package app holds the inventory's use cases: it validates requests with
// the domain's rules, calls storage through the small interfaces declared
// here, and returns domain values and domain errors for the transport to
// map.
package app

import (
	"context"
	"log/slog"

	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// Catalog reads products. Methods are safe for concurrent use and honour
// ctx cancellation.
type Catalog interface {
	// ProductsBySKU returns the existing products among skus, in SKU order;
	// unknown SKUs are absent.
	ProductsBySKU(ctx context.Context, skus []string) ([]inventory.Product, error)
	// ListProducts returns at most limit products after the SKU after, in
	// SKU order.
	ListProducts(ctx context.Context, after string, limit int) ([]inventory.Product, error)
	// Product returns one product or an error wrapping inventory.ErrNotFound.
	Product(ctx context.Context, sku string) (inventory.Product, error)
}

// Reservations reserves and releases stock; each call is one transaction
// that also appends its event to the outbox.
type Reservations interface {
	// Reserve takes every item of req or none (storing a REJECTED
	// reservation). created is false when the order already had a
	// reservation, which is returned unchanged. An unknown SKU fails with a
	// *inventory.NotFoundError whose Value is the SKU.
	Reserve(ctx context.Context, req inventory.ReserveRequest) (res inventory.Reservation, created bool, err error)
	// Release gives back a RESERVED reservation's stock, once, and returns
	// the reservation RELEASED; released is false when nothing was written
	// (already RELEASED, or REJECTED). An order without a reservation gets a
	// tombstone (RELEASED, no items; released true) that a later Reserve
	// returns instead of reserving.
	Release(ctx context.Context, orderID string) (res inventory.Reservation, released bool, err error)
	// Reservation returns orderID's reservation, or an error wrapping
	// inventory.ErrNotFound.
	Reservation(ctx context.Context, orderID string) (inventory.Reservation, error)
}

// StockAdjuster sets a product's available stock under optimistic
// locking, or changes it by a delta. A delta whose d.RequestKey was applied
// before changes nothing and comes back with applied false and the product
// as it is.
type StockAdjuster interface {
	// AdjustStock applies a if the product is still at a.ExpectedVersion.
	// Errors wrap inventory.ErrNotFound or optlock.ErrConflict.
	AdjustStock(ctx context.Context, a inventory.Adjustment) (inventory.Product, error)
	// AddStockAt applies d to the product read at version with available
	// units; it fails with an error wrapping optlock.ErrConflict if the
	// version has moved on, or inventory.ErrStockOutOfRange.
	AddStockAt(ctx context.Context, d inventory.StockDelta, version, available int64) (p inventory.Product, applied bool, err error)
	// AddStock applies d whatever the version, waiting for the row lock.
	// Errors wrap inventory.ErrNotFound or inventory.ErrStockOutOfRange.
	AddStock(ctx context.Context, d inventory.StockDelta) (p inventory.Product, applied bool, err error)
}

// VersionVerifier recovers the version a client read from its version
// token (optlock.Signer). A forged or foreign token fails with an error
// wrapping optlock.ErrInvalidToken.
type VersionVerifier interface {
	Verify(aggregateType, id, token string) (int64, error)
}

var _ VersionVerifier = (*optlock.Signer)(nil)

// Repository is everything the use cases need from storage.
type Repository interface {
	Catalog
	Reservations
	StockAdjuster
}

// Service runs the inventory use cases. It is safe for concurrent use.
type Service struct {
	repo     Repository
	versions VersionVerifier
	locks    *optlock.Metrics
	hot      *optlock.Contention
	logger   *slog.Logger
}

// New returns a Service. locks records AdjustStock's optimistic-lock
// outcomes and may be nil. hot picks, per SKU, how a delta without a
// client's version is written (see AddStock); nil means always
// optimistically. A nil logger discards logs.
func New(repo Repository, versions VersionVerifier, locks *optlock.Metrics, hot *optlock.Contention, logger *slog.Logger) *Service {
	return &Service{repo: repo, versions: versions, locks: locks, hot: hot, logger: logs.OrDiscard(logger)}
}
