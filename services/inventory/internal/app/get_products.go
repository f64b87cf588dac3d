package app

import (
	"context"
	"fmt"
	"slices"

	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// GetProducts returns the named SKUs (each once, in request order; an
// unknown one fails with NotFound naming skus[i]) or, when skus is empty,
// one page of the catalog in SKU order with the token of the next page (""
// on the last page).
func (s *Service) GetProducts(ctx context.Context, skus []string, pageSize int32, pageToken string) ([]inventory.Product, string, error) {
	q, err := inventory.NewProductQuery(skus, pageSize, pageToken)
	if err != nil {
		return nil, "", err
	}
	if len(q.SKUs) > 0 {
		found, err := s.repo.ProductsBySKU(ctx, q.SKUs)
		if err != nil {
			return nil, "", fmt.Errorf("get products: %w", err)
		}
		out := make([]inventory.Product, 0, len(q.SKUs))
		for _, sku := range q.SKUs {
			i := slices.IndexFunc(found, func(p inventory.Product) bool { return p.SKU == sku })
			if i < 0 {
				return nil, "", inventory.NotFound(fmt.Sprintf("skus[%d]", slices.Index(skus, sku)), sku)
			}
			out = append(out, found[i])
		}
		return out, "", nil
	}
	// One row more than the page tells whether another page follows,
	// without a count query.
	page, err := s.repo.ListProducts(ctx, q.After, q.PageSize+1)
	if err != nil {
		return nil, "", fmt.Errorf("list products: %w", err)
	}
	if len(page) <= q.PageSize {
		return page, "", nil
	}
	page = page[:q.PageSize]
	return page, inventory.PageToken(page[len(page)-1].SKU), nil
}
