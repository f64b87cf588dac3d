// Package peers holds the order service's clients of the services it calls:
// Catalog reads product data (name, unit price, stock) from the inventory
// service, which owns the catalog. It implements app.Catalog over the
// inventory gRPC API; the connection, dialed with platform/grpcclient,
// presents the order service's own certificate and carries the trace.
package peers

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	"github.com/goodgo/goodgo/services/order/internal/app"
	"github.com/goodgo/goodgo/services/order/internal/order"
)

// DefaultTimeout bounds one catalog read when NewCatalog is given no timeout. A
// PlaceOrder waits for it, so it is short; a slow catalog is reported as
// unavailable and the client retries with the same idempotency key.
const DefaultTimeout = 2 * time.Second

// maxPages bounds the pages read for one request, in case a misbehaving
// server keeps returning a page token.
const maxPages = 10

// Catalog implements app.Catalog. It is safe for concurrent use.
type Catalog struct {
	inventory inventoryv1.InventoryServiceClient
	timeout   time.Duration
}

var _ app.Catalog = (*Catalog)(nil)

// NewCatalog returns a Catalog reading through inventory, each read bounded by
// timeout (DefaultTimeout if zero or less).
func NewCatalog(inventory inventoryv1.InventoryServiceClient, timeout time.Duration) *Catalog {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &Catalog{inventory: inventory, timeout: timeout}
}

// Products implements app.Catalog. The inventory service answers NotFound
// naming the unknown SKU by its index in the request (`skus[i]: "X" not
// found`); since skus are the order's lines in line order, that is the
// *order.Error (ErrNotFound) `items[i].sku: unknown SKU "X"`, which tells
// the client which line is wrong. A NotFound without that index is
// ErrNotFound naming items. SKUs missing from an OK answer are absent from
// the result. Errors: app.ErrCatalogUnavailable when the inventory service
// is unreachable, overloaded or too slow.
func (c *Catalog) Products(ctx context.Context, skus []string) (map[string]app.Product, error) {
	// When the caller's deadline comes before ours, a DeadlineExceeded is
	// the caller's, even if the server reports it a moment before ctx ends.
	callerDeadline, ok := ctx.Deadline()
	callerBound := ok && !callerDeadline.After(time.Now().Add(c.timeout))
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	products := make(map[string]app.Product, len(skus))
	req := &inventoryv1.GetProductsRequest{Skus: skus, PageSize: int32(len(skus))}
	for range maxPages {
		resp, err := c.inventory.GetProducts(callCtx, req)
		if err != nil {
			if err := ctx.Err(); err != nil {
				// The caller gave up or its deadline passed: not the catalog's fault.
				return nil, fmt.Errorf("catalog: get products: %w", err)
			}
			if callerBound && status.Code(err) == codes.DeadlineExceeded {
				return nil, fmt.Errorf("catalog: get products: %w", context.DeadlineExceeded)
			}
			return nil, mapError(err, skus)
		}
		for _, p := range resp.GetProducts() {
			if p.GetUnitPrice() == nil {
				return nil, fmt.Errorf("catalog: product %q has no unit price", p.GetSku())
			}
			products[p.GetSku()] = app.Product{
				SKU:       p.GetSku(),
				Name:      p.GetName(),
				UnitPrice: order.Money{Currency: p.GetUnitPrice().GetCurrencyCode(), Minor: p.GetUnitPrice().GetAmountMinor()},
				Available: p.GetAvailable(),
			}
		}
		if resp.GetNextPageToken() == "" {
			return products, nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return nil, fmt.Errorf("catalog: more than %d pages for %d SKUs", maxPages, len(skus))
}

// mapError classifies a failed call for skus: transient failures become
// ErrCatalogUnavailable (the client may retry), NotFound becomes the domain's
// not-found naming the order line, and anything else stays an internal
// error.
func mapError(err error, skus []string) error {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted, codes.Canceled:
		return fmt.Errorf("%w: %w", app.ErrCatalogUnavailable, err)
	case codes.NotFound:
		return fmt.Errorf("catalog: %w", unknownSKU(status.Convert(err).Message(), skus))
	default:
		return fmt.Errorf("catalog: get products: %w", err)
	}
}

// skuIndex matches the field the inventory service names in a NotFound
// answer to GetProducts: skus[i].
var skuIndex = regexp.MustCompile(`^skus\[(\d+)\]: `)

// unknownSKU turns the inventory's NotFound message about skus[i] into the
// error about the order line items[i]. The index is taken only if it is
// within the request; the SKU named is the one the request sent there.
func unknownSKU(msg string, skus []string) error {
	if m := skuIndex.FindStringSubmatch(msg); m != nil {
		if i, err := strconv.Atoi(m[1]); err == nil && i < len(skus) {
			return &order.Error{Kind: order.ErrNotFound, Field: "items[" + strconv.Itoa(i) + "].sku", Problem: "unknown SKU " + strconv.Quote(skus[i])}
		}
	}
	return &order.Error{Kind: order.ErrNotFound, Field: "items", Problem: "unknown SKU"}
}
