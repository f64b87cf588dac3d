package app

import (
	"context"
	"fmt"

	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// GetStock returns one product with its stock and version.
func (s *Service) GetStock(ctx context.Context, sku string) (inventory.Product, error) {
	if err := inventory.ValidateSKU("sku", sku); err != nil {
		return inventory.Product{}, err
	}
	p, err := s.repo.Product(ctx, sku)
	if err != nil {
		return inventory.Product{}, fmt.Errorf("get stock: %w", err)
	}
	return p, nil
}
