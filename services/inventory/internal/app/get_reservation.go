package app

import (
	"context"
	"fmt"

	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// GetReservation returns orderID's reservation with its items, or an error
// wrapping inventory.ErrNotFound when the order has none. Who may read it
// (operators) is the transport's policy.
func (s *Service) GetReservation(ctx context.Context, orderID string) (inventory.Reservation, error) {
	id, err := inventory.ParseUUID("order_id", orderID)
	if err != nil {
		return inventory.Reservation{}, err
	}
	res, err := s.repo.Reservation(ctx, id)
	if err != nil {
		return inventory.Reservation{}, fmt.Errorf("get reservation: %w", err)
	}
	return res, nil
}
