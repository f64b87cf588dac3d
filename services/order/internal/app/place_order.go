package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/goodgo/goodgo/platform/failpoint"
	"github.com/goodgo/goodgo/services/order/internal/order"
)

// PlaceOrder is a request to place an order.
type PlaceOrder struct {
	Draft order.Draft
	// PlacedBy is the caller's identity; the saga acts with its permissions.
	PlacedBy string
	// IdempotencyKey is the hashed (caller, method, key) of the request. The
	// database keeps it unique, which guards against a duplicate order when
	// the idempotency record in Redis is lost. nil disables the guard.
	IdempotencyKey []byte
}

// PlaceOrder validates the request, prices every line from the catalog
// (never from the client), and stores a PENDING order with its
// order.created.v1 event. A request whose idempotency key already created an
// order returns that order unchanged, or ErrIdempotencyKeyReused when the
// two requests differ. Errors: an *order.Error of kind ErrInvalid (bad
// input, nothing read or written), ErrNotFound (unknown SKU) or
// ErrFailedPrecondition (unpriceable items); ErrCatalogUnavailable.
func (a *App) PlaceOrder(ctx context.Context, req PlaceOrder) (order.Order, error) {
	d := req.Draft.Normalize()
	if err := d.Validate(); err != nil {
		return order.Order{}, err
	}
	if req.IdempotencyKey != nil {
		// Looked up before the catalog: a retry must get its order back even
		// if prices changed or a SKU was withdrawn since.
		existing, err := a.repo.FindByIdempotencyKey(ctx, req.IdempotencyKey)
		switch {
		case err == nil:
			return replay(d, existing)
		case !errors.Is(err, order.ErrNotFound):
			return order.Order{}, fmt.Errorf("place order: %w", err)
		}
	}

	products, err := a.catalog.Products(ctx, d.SKUs())
	if err != nil {
		return order.Order{}, fmt.Errorf("place order: read catalog: %w", err)
	}
	prices := make(map[string]order.Price, len(products))
	for sku, p := range products {
		prices[sku] = order.Price{Name: p.Name, Unit: p.UnitPrice}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return order.Order{}, fmt.Errorf("place order: new id: %w", err)
	}
	o, err := order.Place(id.String(), d, prices, req.PlacedBy, a.now())
	if err != nil {
		return order.Order{}, err
	}

	stored, created, err := a.repo.Create(ctx, o, req.IdempotencyKey)
	if err != nil {
		return order.Order{}, fmt.Errorf("place order: %w", err)
	}
	failpoint.Hit("order.place.after-commit")
	if !created {
		// A concurrent request with the same key won the insert.
		return replay(d, stored)
	}
	return stored, nil
}

// replay returns the order an earlier request with the same idempotency key
// created, if that request was the same as d.
func replay(d order.Draft, existing order.Order) (order.Order, error) {
	if !d.SameRequest(existing) {
		return order.Order{}, ErrIdempotencyKeyReused
	}
	return existing, nil
}
