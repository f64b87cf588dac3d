package app

import (
	"context"
	"fmt"

	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// ReleaseStock gives back what orderID's reservation holds and returns the
// reservation, RELEASED. It is safe to repeat and to run concurrently: the
// stock is returned at most once, and a RELEASED or REJECTED reservation is
// returned unchanged. It never fails for a well-formed order id: an order
// without a reservation gets a tombstone (RELEASED, no items), so that a
// ReserveStock still in flight, or sent later, takes no stock. A
// compensation is thereby absorbing, whatever it overtakes.
func (s *Service) ReleaseStock(ctx context.Context, orderID string) (inventory.Reservation, error) {
	id, err := inventory.ParseUUID("order_id", orderID)
	if err != nil {
		return inventory.Reservation{}, err
	}
	res, released, err := s.repo.Release(ctx, id)
	if err != nil {
		return inventory.Reservation{}, fmt.Errorf("release stock: %w", err)
	}
	switch {
	case released && res.Tombstone():
		s.logger.InfoContext(ctx, "order released before it was reserved: tombstone recorded",
			"order_id", res.OrderID, "reservation_id", res.ID)
	case released:
		s.logger.InfoContext(ctx, "stock reservation released",
			"order_id", res.OrderID, "reservation_id", res.ID, "items", len(res.Items))
	}
	return res, nil
}
