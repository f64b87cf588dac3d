package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// AdjustStock (admin) sets the available units of sku, provided the product
// is still at the version versionToken was issued for (GetStock,
// GetProducts or a previous AdjustStock). Every stock movement bumps the
// version, a reservation included: a token goes stale as soon as the number
// the admin saw is no longer true, and the admin must read again. A stale,
// forged or foreign token fails with an error wrapping optlock.ErrConflict
// (stale) or optlock.ErrInvalidToken; an unknown SKU with a NotFoundError.
// The reason travels in the inventory.stock_adjusted.v1 event.
//
// Only users with the admin role may adjust stock (the transport's policy
// says so too); anyone else fails with an error wrapping
// inventory.ErrPermissionDenied before the request is even validated, so a
// caller without the right learns nothing about SKUs or tokens.
func (s *Service) AdjustStock(ctx context.Context, who caller.Identity, sku string, available int64, versionToken, reason string) (inventory.Product, error) {
	if !who.HasRole(caller.RoleAdmin) {
		return inventory.Product{}, fmt.Errorf("adjust stock by %s: %w", who, inventory.ErrPermissionDenied)
	}
	adj, err := inventory.NewAdjustment(sku, available, reason)
	if err != nil {
		return inventory.Product{}, err
	}
	if versionToken == "" {
		return inventory.Product{}, &inventory.FieldError{Field: "version_token", Problem: "required"}
	}
	if adj.ExpectedVersion, err = s.versions.Verify(event.AggregateProduct, sku, versionToken); err != nil {
		// An unknown SKU is the more useful answer than a bad token.
		if _, perr := s.repo.Product(ctx, sku); perr != nil {
			return inventory.Product{}, fmt.Errorf("adjust stock: %w", perr)
		}
		return inventory.Product{}, fmt.Errorf("adjust stock of %s: %w", sku, err)
	}
	p, err := s.repo.AdjustStock(ctx, adj)
	if !errors.Is(err, inventory.ErrNotFound) {
		// Only a conditional update that ran counts as an attempt.
		err = s.locks.Record(event.AggregateProduct, err)
	}
	if err != nil {
		return inventory.Product{}, fmt.Errorf("adjust stock: %w", err)
	}
	s.logger.InfoContext(ctx, "stock adjusted", "sku", p.SKU, "available", p.Available, "version", p.Version, "by", who.String())
	return p, nil
}
