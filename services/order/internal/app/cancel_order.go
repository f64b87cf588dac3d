package app

import (
	"context"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/services/order/internal/order"
)

// CancelOrder moves a PENDING order to CANCELLED with reason and publishes
// order.cancelled.v1, for a service acting for the order's placer (the
// saga compensating). Cancelling a CANCELLED order returns it unchanged
// (the first reason stays; no new event). Errors: ErrInvalid (malformed id,
// over-long reason), ErrNotFound, ErrPermissionDenied (not acting for the
// placer), ErrFailedPrecondition (CONFIRMED); an error wrapping
// optlock.ErrConflict if concurrent writers won every retry.
func (a *App) CancelOrder(ctx context.Context, id caller.Identity, orderID, reason string) (order.Order, error) {
	if err := order.ValidateCancelReason(reason); err != nil {
		return order.Order{}, err
	}
	return a.transition(ctx, "cancel order", orderID, func(o *order.Order) (order.Change, error) {
		if !actsForPlacer(id, *o) {
			return order.ChangeNone, errNotForPlacer
		}
		return o.Cancel(reason, a.now())
	})
}
