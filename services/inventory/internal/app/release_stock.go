package app

import (
	"context"
	"fmt"

	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// ReleaseStock gives back what orderID's reservation holds and returns the
// reservation, RELEASED. It is safe to repeat and to run concurrently: the
// stock is returned at most once, and a RELEASED or REJECTED reservation is
// returned unchanged. An unknown order fails with a NotFoundError naming
// order_id.
func (s *Service) ReleaseStock(ctx context.Context, orderID string) (inventory.Reservation, error) {
	id, err := inventory.ParseUUID("order_id", orderID)
	if err != nil {
		return inventory.Reservation{}, err
	}
	res, released, err := s.repo.Release(ctx, id)
	if err != nil {
		return inventory.Reservation{}, fmt.Errorf("release stock: %w", err)
	}
	if released {
		s.logger.InfoContext(ctx, "stock reservation released",
			"order_id", res.OrderID, "reservation_id", res.ID, "items", len(res.Items))
	}
	return res, nil
}
