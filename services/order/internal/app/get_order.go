package app

import (
	"context"
	"fmt"

	"github.com/goodgo/goodgo/services/order/internal/order"
)

// GetOrder returns one order from the write model. Errors: an *order.Error
// of kind ErrInvalid for a malformed id; one wrapping order.ErrNotFound.
func (a *App) GetOrder(ctx context.Context, id string) (order.Order, error) {
	id = order.NormalizeID(id)
	if err := order.ValidateID("order_id", id); err != nil {
		return order.Order{}, err
	}
	o, err := a.repo.Get(ctx, id)
	if err != nil {
		return order.Order{}, fmt.Errorf("get order: %w", err)
	}
	return o, nil
}
