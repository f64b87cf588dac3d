// Package app holds the order service's use cases, one file each. It
// orchestrates the domain (package order) with the small interfaces it
// declares for what it needs from the outside: storage (Repository) and the
// inventory catalog (Catalog). It knows nothing of gRPC or SQL.
package app

import (
	"context"
	"errors"
	"time"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/order/internal/order"
)

// Repository stores orders. Every method that changes an order also writes
// the matching domain event to the outbox in the same transaction. Errors
// for a missing order wrap order.ErrNotFound. Methods are safe for
// concurrent use.
type Repository interface {
	// Create stores a new order with its lines and its order.created.v1 event.
	// If idempotencyKey is not nil and an order was already created with it,
	// Create stores nothing and returns that order with created == false.
	Create(ctx context.Context, o order.Order, idempotencyKey []byte) (stored order.Order, created bool, err error)
	// FindByIdempotencyKey returns the order created with key.
	FindByIdempotencyKey(ctx context.Context, key []byte) (order.Order, error)
	// Get returns the order with id (a valid UUID).
	Get(ctx context.Context, id string) (order.Order, error)
	// Update reads order id, calls change on it and, unless change fails or
	// returns order.ChangeNone, writes the changed order and the event of the
	// change if the order is still at the version read; otherwise it returns
	// an error wrapping optlock.ErrConflict and writes nothing. It returns
	// the order as stored afterwards (version incremented on a change). An
	// error of change is returned unchanged and nothing is written.
	Update(ctx context.Context, id string, change func(o *order.Order) (order.Change, error)) (order.Order, error)
	// ListPending returns up to limit PENDING orders created before
	// createdBefore, oldest first (by creation time, then id), after the
	// position after (nil: from the start), with their lines and without
	// their shipping addresses (left empty, never opened).
	ListPending(ctx context.Context, createdBefore time.Time, after *PageCursor, limit int) ([]order.Order, error)
}

// Catalog reads product data from the inventory service, which owns it.
type Catalog interface {
	// Products returns the catalog entries of skus, keyed by SKU; skus are
	// the SKUs of an order's lines, in line order. An unknown SKU is either
	// absent from the map or reported as an *order.Error of kind
	// ErrNotFound naming its line (items[i].sku, i its index in skus). When
	// the catalog cannot be reached the error wraps ErrCatalogUnavailable.
	Products(ctx context.Context, skus []string) (map[string]Product, error)
}

// Product is a catalog entry as the order service needs it.
type Product struct {
	SKU       string
	Name      string
	UnitPrice order.Money
	// Available is the stock on hand that is not reserved. It is informative
	// only: stock is reserved by the order saga, not at placement.
	Available int64
}

var (
	// ErrCatalogUnavailable reports that the inventory catalog did not answer
	// (unreachable, overloaded or too slow); the request may be retried.
	ErrCatalogUnavailable = errors.New("catalog unavailable")
	// ErrIdempotencyKeyReused reports a PlaceOrder whose idempotency key
	// already created an order from a different request.
	ErrIdempotencyKeyReused = errors.New("idempotency key reused with a different request")
)

// App runs the order use cases. It is safe for concurrent use.
//
// Who may do what is decided in two places. The transport's policy
// (grpcapi.Policies) admits the caller to the RPC; App then checks the
// caller against the order itself, with the identity the transport
// verified (caller.Identity):
//   - PlaceOrder: the signed-in user, stored as the order's placer (the
//     policy already made sure customer_id is that user).
//   - GetOrder, UpdateShippingAddress: the order's placer or an operator.
//     Anyone else is told the order does not exist (NotFound, the same
//     answer as for an unknown id), so that order ids cannot be probed.
//   - ConfirmOrder, CancelOrder: a service acting for the order's placer
//     (the orchestrator's saga, admitted by policy with its on-behalf-of
//     assertion); acting for anyone else fails with ErrPermissionDenied.
//   - ListStalePendingOrders: the orchestrator service (the policy alone:
//     it lists everyone's orders for its reconciler).
type App struct {
	repo    Repository
	catalog Catalog
	locks   *optlock.Metrics
	retry   optlock.Policy
	now     func() time.Time
}

// New returns an App over repo and catalog. locks records the optimistic
// locking outcomes (it may be nil); conflicting internal transitions are
// retried with optlock.DefaultPolicy.
func New(repo Repository, catalog Catalog, locks *optlock.Metrics) *App {
	return &App{repo: repo, catalog: catalog, locks: locks, retry: optlock.DefaultPolicy, now: now}
}

// errNotForPlacer refuses a confirmation or cancellation made for a user
// other than the order's placer.
var errNotForPlacer = &order.Error{Kind: order.ErrPermissionDenied, Problem: "the order may be confirmed or cancelled only for the customer who placed it"}

// mayAccess reports whether id may read and readdress o: its placer or an
// operator.
func mayAccess(id caller.Identity, o order.Order) bool {
	return id.IsOperator() || (o.PlacedBy != "" && id.EndUser() == o.PlacedBy)
}

// actsForPlacer reports whether id is a service acting for o's placer.
func actsForPlacer(id caller.Identity, o order.Order) bool {
	return id.Delegated && o.PlacedBy != "" && id.User == o.PlacedBy
}

// now is the clock, truncated to PostgreSQL's microsecond precision so that
// an order returned before and after a round trip through storage is equal.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// aggregate labels optimistic-lock metrics.
const aggregate = event.AggregateOrder
