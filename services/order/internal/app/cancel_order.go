package app

import (
	"context"

	"github.com/goodgo/goodgo/services/order/internal/order"
)

// CancelOrder moves a PENDING order to CANCELLED with reason and publishes
// order.cancelled.v1; only an admin caller (the orchestrator) may.
// Cancelling a CANCELLED order returns it unchanged (the first reason stays;
// no new event). Errors: ErrPermissionDenied (not an admin, checked first),
// ErrInvalid (malformed id, over-long reason), ErrNotFound,
// ErrFailedPrecondition (CONFIRMED); an error wrapping optlock.ErrConflict if
// concurrent writers won every retry.
func (a *App) CancelOrder(ctx context.Context, caller, id, reason string) (order.Order, error) {
	if !a.admins[caller] {
		return order.Order{}, errMayNotTransition
	}
	if err := order.ValidateCancelReason(reason); err != nil {
		return order.Order{}, err
	}
	return a.transition(ctx, "cancel order", id, func(o *order.Order) (order.Change, error) {
		return o.Cancel(reason, a.now())
	})
}
