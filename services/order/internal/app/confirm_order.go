package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/order/internal/order"
)

// ConfirmOrder moves a PENDING order to CONFIRMED and publishes
// order.confirmed.v1, for a service acting for the order's placer (the
// saga's last step). Confirming a CONFIRMED order returns it unchanged (no
// new event), so the orchestrator may retry freely. Errors: ErrInvalid
// (malformed id), ErrNotFound, ErrPermissionDenied (not acting for the
// placer), ErrFailedPrecondition (CANCELLED); an error wrapping
// optlock.ErrConflict if concurrent writers won every retry.
func (a *App) ConfirmOrder(ctx context.Context, id caller.Identity, orderID string) (order.Order, error) {
	return a.transition(ctx, "confirm order", orderID, func(o *order.Order) (order.Change, error) {
		if !actsForPlacer(id, *o) {
			return order.ChangeNone, errNotForPlacer
		}
		return o.Confirm(a.now())
	})
}

// transition applies an internal (server-initiated) change with optimistic
// locking, retrying conflicts: each attempt re-reads the order, so the
// transition is checked against the latest state.
func (a *App) transition(ctx context.Context, op, id string, change func(*order.Order) (order.Change, error)) (order.Order, error) {
	id = order.NormalizeID(id)
	if err := order.ValidateID("order_id", id); err != nil {
		return order.Order{}, err
	}
	var result order.Order
	err := optlock.Retry(ctx, a.retry, a.locks, aggregate, func(ctx context.Context) error {
		noop := false
		o, err := a.repo.Update(ctx, id, func(o *order.Order) (order.Change, error) {
			c, err := change(o)
			noop = err == nil && c == order.ChangeNone
			return c, err
		})
		result = o
		if err == nil && noop {
			// Nothing was written: not a conditional update, so not an
			// optimistic-lock attempt (optlock.Record counts nil as one).
			return errNoChange
		}
		return err
	})
	if errors.Is(err, errNoChange) {
		err = nil
	}
	if err != nil {
		return order.Order{}, fmt.Errorf("%s: %w", op, err)
	}
	return result, nil
}

// errNoChange tells transition's retry loop that the order already was in
// the requested state.
var errNoChange = errors.New("no change")
