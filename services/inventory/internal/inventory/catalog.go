package inventory

import (
	"encoding/base64"
	"fmt"

	"github.com/goodgo/goodgo/platform/sku"
)

// ProductQuery is a validated GetProducts: either the named SKUs (each once,
// in request order) or one page of the whole catalog in SKU order.
type ProductQuery struct {
	// SKUs, when not empty, names the products wanted; paging is ignored.
	SKUs []string
	// After is the last SKU of the previous page ("" for the first page).
	After string
	// PageSize is the number of products per page, 1..MaxPageSize.
	PageSize int
}

// NewProductQuery validates a GetProducts request. pageSize 0 means
// DefaultPageSize and larger values are capped at MaxPageSize (AIP-158);
// a negative one is an error. pageToken must come from a previous
// response's next page token.
func NewProductQuery(skus []string, pageSize int32, pageToken string) (ProductQuery, error) {
	if len(skus) > MaxSKUs {
		return ProductQuery{}, invalid("skus", "must have at most %d entries (got %d)", MaxSKUs, len(skus))
	}
	q := ProductQuery{PageSize: DefaultPageSize}
	seen := make(map[string]bool, len(skus))
	for i, sku := range skus {
		if err := ValidateSKU(fmt.Sprintf("skus[%d]", i), sku); err != nil {
			return ProductQuery{}, err
		}
		if !seen[sku] {
			seen[sku] = true
			q.SKUs = append(q.SKUs, sku)
		}
	}
	switch {
	case pageSize < 0:
		return ProductQuery{}, invalid("page_size", "must not be negative (got %d)", pageSize)
	case pageSize > MaxPageSize:
		q.PageSize = MaxPageSize
	case pageSize > 0:
		q.PageSize = int(pageSize)
	}
	if pageToken != "" {
		after, err := decodePageToken(pageToken)
		if err != nil {
			return ProductQuery{}, err
		}
		q.After = after
	}
	return q, nil
}

// PageToken returns the opaque token of the page that follows lastSKU. It is
// the SKU in base64url: opaque to clients, stable across restarts, and safe
// because a page token grants nothing a client could not ask for directly.
func PageToken(lastSKU string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(lastSKU))
}

func decodePageToken(token string) (string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || !sku.Valid(string(raw)) {
		return "", invalid("page_token", "malformed")
	}
	return string(raw), nil
}
