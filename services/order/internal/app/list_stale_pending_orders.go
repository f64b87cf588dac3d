package app

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/goodgo/goodgo/services/order/internal/order"
)

// Bounds of ListStalePendingOrders.
const (
	// MinStaleAge is the smallest age asked for: younger orders are still
	// on their way to the saga.
	MinStaleAge = time.Second
	// DefaultStalePageSize and MaxStalePageSize bound a page.
	DefaultStalePageSize = 100
	MaxStalePageSize     = 500
)

// PageCursor is the position after which a listing of orders continues:
// the last order of the previous page.
type PageCursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// ListStalePendingOrders returns up to pageSize (0: DefaultStalePageSize,
// at most MaxStalePageSize) orders that are still PENDING and were placed
// more than olderThan ago, oldest first, after the cursor (nil: from the
// start), and the cursor of the next page (nil after the last). The
// orchestrator's reconciler starts the saga of those that have none. The
// orders' shipping addresses are left empty: the saga does not need them
// and listing opens no personal data. Who may list is the transport's
// policy (the orchestrator only). Errors: an *order.Error of kind
// ErrInvalid naming older_than or page_size.
func (a *App) ListStalePendingOrders(ctx context.Context, olderThan time.Duration, pageSize int, after *PageCursor) ([]order.Order, *PageCursor, error) {
	if olderThan < MinStaleAge {
		return nil, nil, &order.Error{Kind: order.ErrInvalid, Field: "older_than", Problem: "must be at least 1s"}
	}
	switch {
	case pageSize < 0 || pageSize > MaxStalePageSize:
		return nil, nil, &order.Error{Kind: order.ErrInvalid, Field: "page_size", Problem: fmt.Sprintf("must be between 0 and %d", MaxStalePageSize)}
	case pageSize == 0:
		pageSize = DefaultStalePageSize
	}
	orders, err := a.repo.ListPending(ctx, a.now().Add(-olderThan), after, pageSize)
	if err != nil {
		return nil, nil, fmt.Errorf("list stale pending orders: %w", err)
	}
	if len(orders) < pageSize {
		return orders, nil, nil
	}
	last := orders[len(orders)-1]
	id, err := uuid.Parse(last.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("list stale pending orders: id %q: %w", last.ID, err)
	}
	return orders, &PageCursor{CreatedAt: last.CreatedAt, ID: id}, nil
}
