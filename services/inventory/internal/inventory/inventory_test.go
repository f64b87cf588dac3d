package inventory_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

const orderID = "0190f3a4-7b1c-7d2e-8f00-0123456789ab"

func TestNewReserveRequest(t *testing.T) {
	t.Parallel()
	many := make([]inventory.Item, inventory.MaxItems+1)
	for i := range many {
		many[i] = inventory.Item{SKU: fmt.Sprintf("SKU-%03d", i), Quantity: 1}
	}
	tests := []struct {
		name    string
		orderID string
		items   []inventory.Item
		field   string // "" means valid
	}{
		{"one item", orderID, []inventory.Item{{"SKU-A", 1}}, ""},
		{"upper-case order id", strings.ToUpper(orderID), []inventory.Item{{"SKU-A", 1}}, ""},
		{"max items", orderID, many[:inventory.MaxItems], ""},
		{"max quantity", orderID, []inventory.Item{{"SKU-A", inventory.MaxQuantity}}, ""},
		{"empty order id", "", []inventory.Item{{"SKU-A", 1}}, "order_id"},
		{"order id not a uuid", "order-1", []inventory.Item{{"SKU-A", 1}}, "order_id"},
		{"order id with braces", "{" + orderID[1:35] + "}", []inventory.Item{{"SKU-A", 1}}, "order_id"},
		{"order id with a non-hex digit", "g" + orderID[1:], []inventory.Item{{"SKU-A", 1}}, "order_id"},
		{"no items", orderID, nil, "items"},
		{"too many items", orderID, many, "items"},
		{"zero quantity", orderID, []inventory.Item{{"SKU-A", 1}, {"SKU-B", 0}}, "items[1].quantity"},
		{"negative quantity", orderID, []inventory.Item{{"SKU-A", -3}}, "items[0].quantity"},
		{"quantity too large", orderID, []inventory.Item{{"SKU-A", inventory.MaxQuantity + 1}}, "items[0].quantity"},
		{"empty sku", orderID, []inventory.Item{{"SKU-A", 1}, {"SKU-B", 1}, {"", 1}}, "items[2].sku"},
		{"lower-case sku", orderID, []inventory.Item{{"sku-a", 1}}, "items[0].sku"},
		{"sku starting with a dash", orderID, []inventory.Item{{"-A", 1}}, "items[0].sku"},
		{"sku too long", orderID, []inventory.Item{{strings.Repeat("A", 65), 1}}, "items[0].sku"},
		{"duplicate sku", orderID, []inventory.Item{{"SKU-A", 1}, {"SKU-B", 1}, {"SKU-A", 2}}, "items[2].sku"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := inventory.NewReserveRequest(tt.orderID, tt.items)
			if tt.field == "" {
				require.NoError(t, err)
				require.Equal(t, strings.ToLower(tt.orderID), req.OrderID)
				require.Len(t, req.Items, len(tt.items))
				return
			}
			requireField(t, err, tt.field)
		})
	}
}

func TestNewReserveRequestSortsItemsBySKU(t *testing.T) {
	t.Parallel()
	in := []inventory.Item{{"SKU-C", 3}, {"SKU-A", 1}, {"SKU-B", 2}}
	req, err := inventory.NewReserveRequest(orderID, in)
	require.NoError(t, err)
	require.Equal(t, []inventory.Item{{"SKU-A", 1}, {"SKU-B", 2}, {"SKU-C", 3}}, req.Items)
	require.Equal(t, "SKU-C", in[0].SKU, "the caller's slice is not reordered")
	require.Equal(t, 2, inventory.ItemIndex(in, "SKU-B"))
	require.Equal(t, -1, inventory.ItemIndex(in, "SKU-X"))
}

func TestReservationSameItems(t *testing.T) {
	t.Parallel()
	r := inventory.Reservation{Items: []inventory.Item{{"SKU-A", 1}, {"SKU-B", 2}}}
	require.True(t, r.SameItems([]inventory.Item{{"SKU-A", 1}, {"SKU-B", 2}}))
	require.False(t, r.SameItems([]inventory.Item{{"SKU-A", 1}, {"SKU-B", 3}}))
	require.False(t, r.SameItems([]inventory.Item{{"SKU-A", 1}}))
}

func TestStatus(t *testing.T) {
	t.Parallel()
	for _, s := range []inventory.Status{inventory.StatusReserved, inventory.StatusRejected, inventory.StatusReleased} {
		got, err := inventory.ParseStatus(string(s))
		require.NoError(t, err)
		require.Equal(t, s, got)
		require.Equal(t, s == inventory.StatusReserved, s.HoldsStock())
	}
	_, err := inventory.ParseStatus("PENDING")
	require.Error(t, err)
}

func TestNewAdjustment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		sku       string
		available int64
		reason    string
		field     string
	}{
		{"valid", "SKU-A", 10, "recount", ""},
		{"zero available without reason", "SKU-A", 0, "", ""},
		{"max available", "SKU-A", inventory.MaxAvailable, "", ""},
		{"bad sku", "sku a", 10, "", "sku"},
		{"negative available", "SKU-A", -1, "", "available"},
		{"available too large", "SKU-A", inventory.MaxAvailable + 1, "", "available"},
		{"reason too long", "SKU-A", 1, strings.Repeat("x", inventory.MaxReasonLen+1), "reason"},
		{"reason with control characters", "SKU-A", 1, "a\x00b", "reason"},
		{"reason not utf-8", "SKU-A", 1, "\xff", "reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, err := inventory.NewAdjustment(tt.sku, tt.available, tt.reason)
			if tt.field == "" {
				require.NoError(t, err)
				require.Equal(t, inventory.Adjustment{SKU: tt.sku, Available: tt.available, Reason: tt.reason}, a)
				return
			}
			requireField(t, err, tt.field)
		})
	}
}

func TestNewProductQuery(t *testing.T) {
	t.Parallel()
	t.Run("defaults to the first page of 50", func(t *testing.T) {
		t.Parallel()
		q, err := inventory.NewProductQuery(nil, 0, "")
		require.NoError(t, err)
		require.Equal(t, inventory.ProductQuery{PageSize: inventory.DefaultPageSize}, q)
	})
	t.Run("caps the page size", func(t *testing.T) {
		t.Parallel()
		q, err := inventory.NewProductQuery(nil, 10_000, "")
		require.NoError(t, err)
		require.Equal(t, inventory.MaxPageSize, q.PageSize)
	})
	t.Run("round-trips a page token", func(t *testing.T) {
		t.Parallel()
		q, err := inventory.NewProductQuery(nil, 7, inventory.PageToken("SKU-MOUSE"))
		require.NoError(t, err)
		require.Equal(t, inventory.ProductQuery{After: "SKU-MOUSE", PageSize: 7}, q)
	})
	t.Run("keeps each named SKU once, in request order", func(t *testing.T) {
		t.Parallel()
		q, err := inventory.NewProductQuery([]string{"SKU-B", "SKU-A", "SKU-B"}, 0, "")
		require.NoError(t, err)
		require.Equal(t, []string{"SKU-B", "SKU-A"}, q.SKUs)
	})
	bad := []struct {
		name     string
		skus     []string
		pageSize int32
		token    string
		field    string
	}{
		{"negative page size", nil, -1, "", "page_size"},
		{"token not base64", nil, 0, "!!!", "page_token"},
		{"token not a SKU", nil, 0, inventory.PageToken("not a sku"), "page_token"},
		{"malformed sku", []string{"SKU-A", "bad sku"}, 0, "", "skus[1]"},
		{"too many skus", make([]string, inventory.MaxSKUs+1), 0, "", "skus"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := inventory.NewProductQuery(tt.skus, tt.pageSize, tt.token)
			requireField(t, err, tt.field)
		})
	}
}

func TestProductValidate(t *testing.T) {
	t.Parallel()
	good := inventory.Product{SKU: "SKU-A", Name: "A", UnitPrice: inventory.Money{Currency: "EUR", Minor: 100}, Available: 1, Version: 1}
	require.NoError(t, good.Validate())
	for name, mutate := range map[string]func(*inventory.Product){
		"unknown currency": func(p *inventory.Product) { p.UnitPrice.Currency = "XXX" },
		"negative price":   func(p *inventory.Product) { p.UnitPrice.Minor = -1 },
		"negative stock":   func(p *inventory.Product) { p.Reserved = -1 },
		"zero version":     func(p *inventory.Product) { p.Version = 0 },
		"lower-case sku":   func(p *inventory.Product) { p.SKU = "sku-a" },
	} {
		p := good
		mutate(&p)
		require.Error(t, p.Validate(), name)
	}
}

func TestErrorClasses(t *testing.T) {
	t.Parallel()
	nf := inventory.NotFound("items[1].sku", "SKU-X")
	require.ErrorIs(t, nf, inventory.ErrNotFound)
	require.NotErrorIs(t, nf, inventory.ErrInvalidArgument)
	require.Equal(t, `items[1].sku: "SKU-X" not found`, nf.Error())
}

// requireField asserts err is a FieldError naming field.
func requireField(t *testing.T, err error, field string) {
	t.Helper()
	require.ErrorIs(t, err, inventory.ErrInvalidArgument)
	var fe *inventory.FieldError
	require.True(t, errors.As(err, &fe), "want a FieldError, got %v", err)
	require.Equal(t, field, fe.Field, "error: %v", err)
	require.True(t, strings.HasPrefix(err.Error(), field+": "), err.Error())
}
