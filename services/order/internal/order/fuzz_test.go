package order_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/goodgo/goodgo/services/order/internal/order"
)

// FuzzDraftValidate feeds arbitrary PlaceOrder input through normalization
// and validation, as the API does. Validation never panics; an error is
// always an *order.Error of kind ErrInvalid naming a field of the request;
// and whatever it accepts is fit to store: valid UTF-8 without control
// characters, an assigned ISO 3166-1 country, a UUID customer id.
func FuzzDraftValidate(f *testing.F) {
	f.Add("0190a0c4-52f7-7b8e-9d1e-4c3b2a190a0c", "SKU-1", int32(2), "Ada", "1 Main St", "London", "N1 9GU", "gb", "tok_visa")
	f.Add("0190A0C4-52F7-7B8E-9D1E-4C3B2A190A0C ", "sku 1", int32(0), "", "x", "y", "z", "ZZ", "")
	f.Add("not-a-uuid", "SKU-\x00", int32(-1), "A\xffB", "\x7f", "Paris", "75001", "FR", "tok")
	f.Add("0190a0c4-52f7-7b8e-9d1e-4c3b2a190a0c", "SKU-1", int32(1001), "Ada", "Line", "City", "1", "UK", strings.Repeat("m", 300))
	f.Fuzz(func(t *testing.T, customer, sku string, qty int32, name, line1, city, postal, country, method string) {
		d := order.Draft{
			CustomerID:      customer,
			Items:           []order.Item{{SKU: sku, Quantity: qty}},
			ShippingAddress: order.Address{Name: name, Line1: line1, City: city, PostalCode: postal, CountryCode: country},
			PaymentMethod:   method,
		}.Normalize()
		err := d.Validate()
		if err != nil {
			var de *order.Error
			if !errors.As(err, &de) || !errors.Is(err, order.ErrInvalid) || de.Field == "" {
				t.Fatalf("validation error %v is not an InvalidArgument naming a field", err)
			}
			return
		}
		if order.ValidateID("customer_id", d.CustomerID) != nil {
			t.Fatalf("accepted customer id %q", d.CustomerID)
		}
		for _, s := range []string{d.ShippingAddress.Name, d.ShippingAddress.Line1, d.ShippingAddress.City, d.ShippingAddress.PostalCode, d.PaymentMethod} {
			if !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Fatalf("accepted %q", s)
			}
		}
		if len(d.ShippingAddress.CountryCode) != 2 || d.ShippingAddress.CountryCode == "ZZ" {
			t.Fatalf("accepted country %q", d.ShippingAddress.CountryCode)
		}
		if again := d.Normalize(); again.Validate() != nil || again.CustomerID != d.CustomerID || again.ShippingAddress != d.ShippingAddress {
			t.Fatalf("normalizing an accepted draft again changed it")
		}
	})
}
