package app

import (
	"context"
	"fmt"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/order/internal/order"
)

// UpdateShippingAddress is a client's request to change the address of a
// PENDING order, made against the version it read.
type UpdateShippingAddress struct {
	// Caller is who asks: the order's placer or an operator may.
	Caller  caller.Identity
	OrderID string
	Address order.Address
	// Version is the version the client read, recovered from its verified
	// version token.
	Version int64
}

// UpdateShippingAddress changes the shipping address if the order is still
// at req.Version and PENDING, and publishes
// order.shipping_address_changed.v1. The same address again returns the
// order unchanged. It is never retried: a version mismatch (now or at the
// write) is an error wrapping optlock.ErrConflict, and the client must read
// again. Errors: ErrInvalid (malformed id or address), ErrNotFound (also
// for someone else's order, checked before the version so that nothing is
// revealed), ErrFailedPrecondition (no longer PENDING).
func (a *App) UpdateShippingAddress(ctx context.Context, req UpdateShippingAddress) (order.Order, error) {
	id := order.NormalizeID(req.OrderID)
	if err := order.ValidateID("order_id", id); err != nil {
		return order.Order{}, err
	}
	addr := req.Address.Normalize()
	if addr == (order.Address{}) {
		return order.Order{}, &order.Error{Kind: order.ErrInvalid, Field: "shipping_address", Problem: "required"}
	}
	if err := addr.Validate("shipping_address"); err != nil {
		return order.Order{}, err
	}
	o, err := a.repo.Update(ctx, id, func(o *order.Order) (order.Change, error) {
		if !mayAccess(req.Caller, *o) {
			return order.ChangeNone, order.NoSuchOrder()
		}
		// The version check comes next: a client that read an older
		// version must look again before it learns anything else.
		if o.Version != req.Version {
			return order.ChangeNone, &optlock.ConflictError{Aggregate: aggregate, ID: id, Presented: req.Version, Current: o.Version}
		}
		return o.ChangeShippingAddress(addr, a.now())
	})
	if err = a.locks.Record(aggregate, err); err != nil {
		return order.Order{}, fmt.Errorf("update shipping address: %w", err)
	}
	return o, nil
}
