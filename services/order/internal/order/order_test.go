package order_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/services/order/internal/order"
)

const (
	customerID = "0190a0c4-52f7-7b8e-9d1e-4c3b2a190a0c"
	orderID    = "0190a0c4-52f7-7b8e-9d1e-000000000001"
)

func validAddress() order.Address {
	return order.Address{Name: "Ada Lovelace", Line1: "1 Analytical St", City: "London", PostalCode: "N1 9GU", CountryCode: "GB"}
}

func validDraft() order.Draft {
	return order.Draft{
		CustomerID:      customerID,
		Items:           []order.Item{{SKU: "SKU-1", Quantity: 2}, {SKU: "SKU-2", Quantity: 1}},
		ShippingAddress: validAddress(),
		PaymentMethod:   "tok_visa",
	}
}

func TestDraftValidate(t *testing.T) {
	t.Parallel()
	many := make([]order.Item, order.MaxItems+1)
	for i := range many {
		many[i] = order.Item{SKU: "SKU-" + strings.Repeat("A", i+1), Quantity: 1}
	}
	tests := []struct {
		name   string
		modify func(*order.Draft)
		field  string // "" means valid
	}{
		{"a valid draft passes", func(*order.Draft) {}, ""},
		{"exactly 50 lines pass", func(d *order.Draft) { d.Items = many[:order.MaxItems] }, ""},
		{"a malformed customer id", func(d *order.Draft) { d.CustomerID = "cust-1" }, "customer_id"},
		{"an upper-case customer id before normalizing", func(d *order.Draft) { d.CustomerID = strings.ToUpper(customerID) }, "customer_id"},
		{"no items", func(d *order.Draft) { d.Items = nil }, "items"},
		{"51 items", func(d *order.Draft) { d.Items = many }, "items"},
		{"zero quantity", func(d *order.Draft) { d.Items[1].Quantity = 0 }, "items[1].quantity"},
		{"negative quantity", func(d *order.Draft) { d.Items[0].Quantity = -3 }, "items[0].quantity"},
		{"quantity above the maximum", func(d *order.Draft) { d.Items[0].Quantity = order.MaxQuantity + 1 }, "items[0].quantity"},
		{"an empty SKU", func(d *order.Draft) { d.Items[1].SKU = "" }, "items[1].sku"},
		{"a lower-case SKU", func(d *order.Draft) { d.Items[0].SKU = "sku-1" }, "items[0].sku"},
		{"a SKU of 65 characters", func(d *order.Draft) { d.Items[0].SKU = strings.Repeat("A", 65) }, "items[0].sku"},
		{"a duplicate SKU", func(d *order.Draft) { d.Items[1].SKU = "SKU-1" }, "items[1].sku"},
		{"no shipping address", func(d *order.Draft) { d.ShippingAddress = order.Address{} }, "shipping_address"},
		{"an address without a city", func(d *order.Draft) { d.ShippingAddress.City = "" }, "shipping_address.city"},
		{"a bad country code", func(d *order.Draft) { d.ShippingAddress.CountryCode = "GBR" }, "shipping_address.country_code"},
		{"a user-assigned code", func(d *order.Draft) { d.ShippingAddress.CountryCode = "ZZ" }, "shipping_address.country_code"},
		{"a reserved code", func(d *order.Draft) { d.ShippingAddress.CountryCode = "UK" }, "shipping_address.country_code"},
		{"an unassigned code", func(d *order.Draft) { d.ShippingAddress.CountryCode = "AB" }, "shipping_address.country_code"},
		{"a name with a control character", func(d *order.Draft) { d.ShippingAddress.Name = "Ada\x00" }, "shipping_address.name"},
		{"an over-long line1", func(d *order.Draft) { d.ShippingAddress.Line1 = strings.Repeat("x", 201) }, "shipping_address.line1"},
		{"no payment method", func(d *order.Draft) { d.PaymentMethod = "" }, "payment_method"},
		{"an over-long payment method", func(d *order.Draft) { d.PaymentMethod = strings.Repeat("t", 256) }, "payment_method"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := validDraft()
			d.Items = append([]order.Item(nil), d.Items...)
			tt.modify(&d)
			err := d.Validate()
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, order.ErrInvalid)
			var de *order.Error
			require.ErrorAs(t, err, &de)
			require.Equal(t, tt.field, de.Field)
			require.True(t, strings.HasPrefix(err.Error(), tt.field+": "), err.Error())
		})
	}
}

func TestDraftNormalize(t *testing.T) {
	t.Parallel()
	d := validDraft()
	d.CustomerID = " " + strings.ToUpper(customerID) + " "
	d.ShippingAddress.CountryCode = " gb"
	d.PaymentMethod = " tok_visa\t"
	n := d.Normalize()
	require.NoError(t, n.Validate())
	require.Equal(t, customerID, n.CustomerID)
	require.Equal(t, "GB", n.ShippingAddress.CountryCode)
	require.Equal(t, "tok_visa", n.PaymentMethod)
}

func TestPlace(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	prices := map[string]order.Price{
		"SKU-1": {Name: "Widget", Unit: order.Money{Currency: "EUR", Minor: 1250}},
		"SKU-2": {Name: "Gadget", Unit: order.Money{Currency: "EUR", Minor: 99}},
	}

	t.Run("prices lines from the catalog and totals them", func(t *testing.T) {
		t.Parallel()
		o, err := order.Place(orderID, validDraft(), prices, "user-7", now)
		require.NoError(t, err)
		require.Equal(t, order.StatusPending, o.Status)
		require.Equal(t, int64(1), o.Version)
		require.Equal(t, order.Money{Currency: "EUR", Minor: 2*1250 + 99}, o.Total)
		require.Equal(t, []order.Line{
			{SKU: "SKU-1", Name: "Widget", Quantity: 2, UnitPrice: order.Money{Currency: "EUR", Minor: 1250}},
			{SKU: "SKU-2", Name: "Gadget", Quantity: 1, UnitPrice: order.Money{Currency: "EUR", Minor: 99}},
		}, o.Lines)
		require.Equal(t, "user-7", o.PlacedBy)
		require.Equal(t, now, o.CreatedAt)
	})

	tests := []struct {
		name   string
		prices map[string]order.Price
		kind   error
		field  string
	}{
		{"an unknown SKU is not found", map[string]order.Price{"SKU-1": prices["SKU-1"]}, order.ErrNotFound, "items[1].sku"},
		{"mixed currencies are refused", map[string]order.Price{
			"SKU-1": prices["SKU-1"], "SKU-2": {Name: "Gadget", Unit: order.Money{Currency: "USD", Minor: 1}},
		}, order.ErrFailedPrecondition, "items"},
		{"an unsupported currency is refused", map[string]order.Price{
			"SKU-1": {Name: "Widget", Unit: order.Money{Currency: "XAU", Minor: 1}}, "SKU-2": prices["SKU-2"],
		}, order.ErrFailedPrecondition, "items[0].sku"},
		{"an overflowing total is refused", map[string]order.Price{
			"SKU-1": {Name: "Widget", Unit: order.Money{Currency: "EUR", Minor: math.MaxInt64 / 2}}, "SKU-2": prices["SKU-2"],
		}, order.ErrFailedPrecondition, "items"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := order.Place(orderID, validDraft(), tt.prices, "user-7", now)
			require.ErrorIs(t, err, tt.kind)
			var de *order.Error
			require.ErrorAs(t, err, &de)
			require.Equal(t, tt.field, de.Field)
		})
	}
}

func TestTransitions(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	other := validAddress()
	other.City = "Paris"
	other.CountryCode = "FR"
	tests := []struct {
		name   string
		from   order.Status
		apply  func(*order.Order) (order.Change, error)
		change order.Change
		to     order.Status
		err    error
	}{
		{"confirm a pending order", order.StatusPending, func(o *order.Order) (order.Change, error) { return o.Confirm(now) }, order.ChangeConfirmed, order.StatusConfirmed, nil},
		{"confirm a confirmed order again", order.StatusConfirmed, func(o *order.Order) (order.Change, error) { return o.Confirm(now) }, order.ChangeNone, order.StatusConfirmed, nil},
		{"confirm a cancelled order", order.StatusCancelled, func(o *order.Order) (order.Change, error) { return o.Confirm(now) }, order.ChangeNone, order.StatusCancelled, order.ErrFailedPrecondition},
		{"cancel a pending order", order.StatusPending, func(o *order.Order) (order.Change, error) { return o.Cancel("payment declined", now) }, order.ChangeCancelled, order.StatusCancelled, nil},
		{"cancel a cancelled order again", order.StatusCancelled, func(o *order.Order) (order.Change, error) { return o.Cancel("again", now) }, order.ChangeNone, order.StatusCancelled, nil},
		{"cancel a confirmed order", order.StatusConfirmed, func(o *order.Order) (order.Change, error) { return o.Cancel("late", now) }, order.ChangeNone, order.StatusConfirmed, order.ErrFailedPrecondition},
		{"readdress a pending order", order.StatusPending, func(o *order.Order) (order.Change, error) { return o.ChangeShippingAddress(other, now) }, order.ChangeShippingAddress, order.StatusPending, nil},
		{"readdress with the same address", order.StatusPending, func(o *order.Order) (order.Change, error) { return o.ChangeShippingAddress(validAddress(), now) }, order.ChangeNone, order.StatusPending, nil},
		{"readdress a confirmed order", order.StatusConfirmed, func(o *order.Order) (order.Change, error) { return o.ChangeShippingAddress(other, now) }, order.ChangeNone, order.StatusConfirmed, order.ErrFailedPrecondition},
		{"readdress a cancelled order", order.StatusCancelled, func(o *order.Order) (order.Change, error) { return o.ChangeShippingAddress(other, now) }, order.ChangeNone, order.StatusCancelled, order.ErrFailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o := order.Order{ID: orderID, Status: tt.from, ShippingAddress: validAddress(), CancelReason: "", Version: 3}
			if tt.from == order.StatusCancelled {
				o.CancelReason = "first"
			}
			before := o
			change, err := tt.apply(&o)
			require.Equal(t, tt.change, change)
			require.Equal(t, tt.to, o.Status)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				require.Equal(t, before, o, "a refused transition changes nothing")
				return
			}
			require.NoError(t, err)
			if change == order.ChangeNone {
				require.Equal(t, before, o, "a repeated transition changes nothing")
			} else {
				require.Equal(t, now, o.UpdatedAt)
			}
		})
	}
}

func TestSameRequest(t *testing.T) {
	t.Parallel()
	prices := map[string]order.Price{
		"SKU-1": {Name: "Widget", Unit: order.Money{Currency: "EUR", Minor: 1}},
		"SKU-2": {Name: "Gadget", Unit: order.Money{Currency: "EUR", Minor: 1}},
	}
	o, err := order.Place(orderID, validDraft(), prices, "u", time.Now())
	require.NoError(t, err)
	require.True(t, validDraft().SameRequest(o))

	readdressed := validDraft()
	readdressed.ShippingAddress.City = "Paris"
	require.False(t, readdressed.SameRequest(o), "the same key with another address is another request")

	more := validDraft()
	more.Items[0].Quantity = 3
	require.False(t, more.SameRequest(o))
	otherCustomer := validDraft()
	otherCustomer.CustomerID = "0190a0c4-52f7-7b8e-9d1e-4c3b2a190a0d"
	require.False(t, otherCustomer.SameRequest(o))
}

func TestValidateID(t *testing.T) {
	t.Parallel()
	require.NoError(t, order.ValidateID("order_id", orderID))
	for _, bad := range []string{"", "x", strings.ToUpper(orderID), orderID + "0", strings.Replace(orderID, "-", "x", 1), "{" + orderID[1:35] + "}"} {
		err := order.ValidateID("order_id", bad)
		require.ErrorIs(t, err, order.ErrInvalid, bad)
		require.Equal(t, "order_id: must be a UUID", err.Error())
	}
	require.Equal(t, orderID, order.NormalizeID(" "+strings.ToUpper(orderID)+" "))
	require.NoError(t, order.ValidateCancelReason(""))
	require.ErrorIs(t, order.ValidateCancelReason(strings.Repeat("r", order.MaxCancelReason+1)), order.ErrInvalid)
}

func TestErrorWithoutFieldIsTheProblem(t *testing.T) {
	t.Parallel()
	err := &order.Error{Kind: order.ErrNotFound, Problem: "order not found"}
	require.Equal(t, "order not found", err.Error())
	require.True(t, errors.Is(err, order.ErrNotFound))
}
