package app

import (
	"context"
	"fmt"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/services/order/internal/order"
)

// GetOrder returns one order from the write model to who, who must have
// placed it or be an operator. Errors: an *order.Error of kind ErrInvalid
// for a malformed id; one wrapping order.ErrNotFound for an unknown order
// and for someone else's (the same error: existence is not revealed).
func (a *App) GetOrder(ctx context.Context, who caller.Identity, id string) (order.Order, error) {
	id = order.NormalizeID(id)
	if err := order.ValidateID("order_id", id); err != nil {
		return order.Order{}, err
	}
	o, err := a.repo.Get(ctx, id)
	if err != nil {
		return order.Order{}, fmt.Errorf("get order: %w", err)
	}
	if !mayAccess(who, o) {
		return order.Order{}, order.NoSuchOrder()
	}
	return o, nil
}
