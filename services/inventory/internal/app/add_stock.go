package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// deltaRetry bounds the server's own retries of an optimistic delta: a
// hot SKU switches to the pessimistic path long before they run out.
var deltaRetry = func() optlock.Policy {
	p := optlock.DefaultPolicy
	p.MaxAttempts = 20
	return p
}()

// AddStock (admin) adds delta units to the available ones of sku (removes
// them when negative), as AdjustStock by delta. Only admins may, as for
// AdjustStock.
//
// With a versionToken it is the client's optimistic update: it applies
// only if the product is still at that version, and a stale, forged or
// foreign token fails as in AdjustStock (optlock.ErrConflict or
// optlock.ErrInvalidToken); the server never retries it.
//
// Without one, the delta applies to whatever the stock is, and the server
// picks how per SKU (optlock.Contention): optimistically (read, check,
// version-checked UPDATE, retried on conflict) while the SKU is quiet,
// with one atomic conditional UPDATE while its updates collide. Either
// way a delta that would take available below 0 or above the maximum
// fails with an error wrapping inventory.ErrStockOutOfRange and changes
// nothing, and a request that was applied before (same idempotency key,
// seen by the database when Redis missed it) changes nothing again.
func (s *Service) AddStock(ctx context.Context, who caller.Identity, sku string, delta int64, versionToken, reason string) (inventory.Product, error) {
	if !who.HasRole(caller.RoleAdmin) {
		return inventory.Product{}, fmt.Errorf("adjust stock by %s: %w", who, inventory.ErrPermissionDenied)
	}
	d, err := inventory.NewStockDelta(sku, delta, reason)
	if err != nil {
		return inventory.Product{}, err
	}
	d.RequestKey, _ = idempotency.KeyFromContext(ctx)

	var p inventory.Product
	switch {
	case versionToken != "":
		p, err = s.addStockAtClientVersion(ctx, d, versionToken)
	case s.hot == nil:
		err = optlock.Retry(ctx, deltaRetry, s.locks, event.AggregateProduct, func(ctx context.Context) (err error) {
			p, err = s.addStockOptimistically(ctx, d)
			return err
		})
	default:
		err = s.hot.Update(ctx, sku, deltaRetry, s.locks,
			func(ctx context.Context) (err error) {
				p, err = s.addStockOptimistically(ctx, d)
				return err
			},
			func(ctx context.Context) (err error) {
				p, _, err = s.repo.AddStock(ctx, d)
				return err
			})
	}
	if err != nil {
		return inventory.Product{}, fmt.Errorf("add stock: %w", err)
	}
	s.logger.InfoContext(ctx, "stock adjusted", "sku", p.SKU, "delta", delta, "available", p.Available, "version", p.Version, "by", who.String())
	return p, nil
}

// addStockAtClientVersion applies d only at the version versionToken
// carries; nothing retries it.
func (s *Service) addStockAtClientVersion(ctx context.Context, d inventory.StockDelta, versionToken string) (inventory.Product, error) {
	version, verr := s.versions.Verify(event.AggregateProduct, d.SKU, versionToken)
	current, err := s.repo.Product(ctx, d.SKU)
	if err != nil {
		return inventory.Product{}, err // an unknown SKU is the more useful answer than a bad token
	}
	if verr != nil {
		return inventory.Product{}, verr
	}
	if current.Version != version {
		return inventory.Product{}, s.locks.Record(event.AggregateProduct, &optlock.ConflictError{
			Aggregate: event.AggregateProduct, ID: d.SKU, Presented: version, Current: current.Version,
		})
	}
	p, _, err := s.repo.AddStockAt(ctx, d, version, current.Available)
	if !errors.Is(err, inventory.ErrNotFound) && !errors.Is(err, inventory.ErrStockOutOfRange) {
		err = s.locks.Record(event.AggregateProduct, err)
	}
	return p, err
}

// addStockOptimistically is one optimistic attempt: read, then a
// version-checked update (an error wrapping optlock.ErrConflict if it
// lost). Retry records the attempt.
func (s *Service) addStockOptimistically(ctx context.Context, d inventory.StockDelta) (inventory.Product, error) {
	current, err := s.repo.Product(ctx, d.SKU)
	if err != nil {
		return inventory.Product{}, err
	}
	p, _, err := s.repo.AddStockAt(ctx, d, current.Version, current.Available)
	return p, err
}
