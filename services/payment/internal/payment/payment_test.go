package payment_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/services/payment/internal/payment"
)

const (
	orderA = "0190f6a8-7d3e-7c1a-9b2e-1234567890ab"
	orderB = "0190F6A8-7D3E-7C1A-9B2E-1234567890AC"
)

func usd(minor int64) *payment.Money { return &payment.Money{Currency: "USD", Minor: minor} }

func TestDeclineRules(t *testing.T) {
	t.Parallel()
	rules := payment.DeclineRules{AboveMinor: 1000}
	tests := []struct {
		name   string
		rules  payment.DeclineRules
		method string
		minor  int64
		want   string
	}{
		{"ordinary card under the limit is captured", rules, "tok_visa", 999, ""},
		{"amount equal to the limit is captured", rules, "tok_visa", 1000, ""},
		{"amount above the limit is declined", rules, "tok_visa", 1001, payment.ReasonAmountLimit},
		{"test card is declined", rules, payment.TestCardDecline, 1, payment.ReasonCardDeclined},
		{"test card wins over the amount limit", rules, payment.TestCardDecline, 5000, payment.ReasonCardDeclined},
		{"a zero limit disables the amount rule", payment.DeclineRules{}, "tok_visa", 1 << 40, ""},
		{"a negative limit disables the amount rule", payment.DeclineRules{AboveMinor: -1}, "tok_visa", 1, ""},
		{"similar method names are not the test card", rules, "tok_decline2", 1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := tc.rules.Decide(tc.method, payment.Money{Currency: "USD", Minor: tc.minor})
			require.Equal(t, tc.want, got)
		})
	}
}

func TestNewCharge(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		orderID string
		amount  *payment.Money
		method  string
		wantErr string // "" = valid
	}{
		{"valid", orderA, usd(100), "tok_visa", ""},
		{"upper-case uuid is valid", orderB, usd(100), "tok_visa", ""},
		{"missing order id", "", usd(100), "tok_visa", "order_id: required"},
		{"malformed order id", "not-a-uuid", usd(100), "tok_visa", "order_id: not a UUID"},
		{"uuid without dashes", "0190f6a87d3e7c1a9b2e1234567890ab", usd(100), "tok_visa", "order_id: not a UUID"},
		{"braced uuid", "{0190f6a8-7d3e-7c1a-9b2e-1234567890ab}", usd(100), "tok_visa", "order_id: not a UUID"},
		{"non-hex uuid", "0190f6a8-7d3e-7c1a-9b2e-1234567890ag", usd(100), "tok_visa", "order_id: not a UUID"},
		{"nil uuid", "00000000-0000-0000-0000-000000000000", usd(100), "tok_visa", "order_id: must not be the nil UUID"},
		{"missing amount", orderA, nil, "tok_visa", "amount: required"},
		{"zero amount", orderA, usd(0), "tok_visa", "amount.amount_minor: must be positive"},
		{"negative amount", orderA, usd(-5), "tok_visa", "amount.amount_minor: must be positive"},
		{"missing currency", orderA, &payment.Money{Minor: 5}, "tok_visa", "amount.currency_code: required"},
		{"unknown currency", orderA, &payment.Money{Currency: "XYZ", Minor: 5}, "tok_visa", "amount.currency_code: unknown currency"},
		{"lower-case currency", orderA, &payment.Money{Currency: "usd", Minor: 5}, "tok_visa", "amount.currency_code: unknown currency"},
		{"missing method", orderA, usd(100), "", "payment_method: required"},
		{"method too long", orderA, usd(100), strings.Repeat("x", 256), "payment_method: must be at most 255 bytes"},
		{"method of exactly 255 bytes", orderA, usd(100), strings.Repeat("x", 255), ""},
		{"method not utf-8", orderA, usd(100), "tok_\xff", "payment_method: must be valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := payment.NewCharge(tc.orderID, tc.amount, tc.method)
			if tc.wantErr == "" {
				require.NoError(t, err)
				require.Equal(t, strings.ToLower(tc.orderID), c.OrderID.String())
				require.Equal(t, *tc.amount, c.Amount)
				return
			}
			require.ErrorIs(t, err, payment.ErrInvalidArgument)
			require.ErrorContains(t, err, tc.wantErr)
			var fe *payment.FieldError
			require.True(t, errors.As(err, &fe))
		})
	}
}

func TestNewRef(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		paymentID string
		orderID   string
		byOrder   bool
		wantErr   string
	}{
		{"by payment id", orderA, "", false, ""},
		{"by order id", "", orderA, true, ""},
		{"neither", "", "", false, "payment_id: exactly one of payment_id and order_id is required"},
		{"both", orderA, orderB, false, "order_id: exactly one of payment_id and order_id is allowed"},
		{"malformed payment id", "x", "", false, "payment_id: not a UUID"},
		{"malformed order id", "", "x", false, "order_id: not a UUID"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ref, err := payment.NewRef(tc.paymentID, tc.orderID)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, payment.ErrInvalidArgument)
				require.EqualError(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.byOrder, ref.ByOrder())
		})
	}
}

func TestValidateRefundReason(t *testing.T) {
	t.Parallel()
	require.NoError(t, payment.ValidateRefundReason(""))
	require.NoError(t, payment.ValidateRefundReason(strings.Repeat("r", payment.MaxRefundReasonLen)))
	require.ErrorIs(t, payment.ValidateRefundReason(strings.Repeat("r", payment.MaxRefundReasonLen+1)), payment.ErrInvalidArgument)
	require.ErrorContains(t, payment.ValidateRefundReason("\xff"), "reason: must be valid UTF-8")
}

func TestIDRoundTrip(t *testing.T) {
	t.Parallel()
	id, ok := payment.ParseID(orderB)
	require.True(t, ok)
	require.Equal(t, strings.ToLower(orderB), id.String())
}

func TestNewPaymentAndRefund(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	later := now.Add(time.Minute)
	rules := payment.DeclineRules{AboveMinor: payment.DefaultDeclineAboveMinor}
	charge, err := payment.NewCharge(orderA, usd(2500), "tok_visa")
	require.NoError(t, err)
	id, _ := payment.ParseID(orderB)

	t.Run("a captured payment refunds once, in full", func(t *testing.T) {
		t.Parallel()
		p := payment.NewPayment(id, charge, rules, now)
		require.Equal(t, payment.StatusCaptured, p.Status)
		require.Empty(t, p.DeclineReason)
		require.EqualValues(t, 1, p.Version)
		require.True(t, p.Matches(charge))

		changed, err := p.Refund("customer asked", later)
		require.NoError(t, err)
		require.True(t, changed)
		require.Equal(t, payment.StatusRefunded, p.Status)
		require.EqualValues(t, 2500, p.Refunded)
		require.EqualValues(t, 2, p.Version)
		require.Equal(t, later, p.UpdatedAt)
		require.Equal(t, now, p.CreatedAt)

		changed, err = p.Refund("again", later.Add(time.Minute))
		require.NoError(t, err)
		require.False(t, changed)
		require.EqualValues(t, 2, p.Version)
		require.Equal(t, "customer asked", p.RefundReason)
	})

	t.Run("a declined payment is stored as declined and its refund changes nothing", func(t *testing.T) {
		t.Parallel()
		declined, err := payment.NewCharge(orderA, usd(2500), payment.TestCardDecline)
		require.NoError(t, err)
		p := payment.NewPayment(id, declined, rules, now)
		require.Equal(t, payment.StatusDeclined, p.Status)
		require.Equal(t, payment.ReasonCardDeclined, p.DeclineReason)
		before := p
		changed, err := p.Refund("saga compensation", later)
		require.NoError(t, err, "a compensation of a decline succeeds")
		require.False(t, changed)
		require.Equal(t, before, p)
	})

	t.Run("a voided payment has no amount, refunds nothing and matches every charge of its order", func(t *testing.T) {
		t.Parallel()
		p := payment.Void(id, charge.OrderID, "cust-1", "saga compensation", now)
		require.Equal(t, payment.StatusVoided, p.Status)
		require.Equal(t, payment.Money{}, p.Amount)
		require.Empty(t, p.Method)
		require.EqualValues(t, 1, p.Version)
		require.Equal(t, "saga compensation", p.RefundReason)
		before := p
		changed, err := p.Refund("again", later)
		require.NoError(t, err)
		require.False(t, changed)
		require.Equal(t, before, p)

		require.True(t, p.Matches(charge))
		other := charge
		other.Amount = payment.Money{Currency: "EUR", Minor: 1}
		require.True(t, p.Matches(other))
		other.OrderID = id
		require.False(t, p.Matches(other), "another order's charge")
	})

	t.Run("an amount above the limit is declined", func(t *testing.T) {
		t.Parallel()
		big, err := payment.NewCharge(orderA, usd(payment.DefaultDeclineAboveMinor+1), "tok_visa")
		require.NoError(t, err)
		p := payment.NewPayment(id, big, rules, now)
		require.Equal(t, payment.StatusDeclined, p.Status)
		require.Equal(t, payment.ReasonAmountLimit, p.DeclineReason)
	})

	t.Run("a different amount or currency does not match", func(t *testing.T) {
		t.Parallel()
		p := payment.NewPayment(id, charge, rules, now)
		other := charge
		other.Amount.Minor++
		require.False(t, p.Matches(other))
		other = charge
		other.Amount.Currency = "EUR"
		require.False(t, p.Matches(other))
		other = charge
		other.Method = "tok_other"
		require.True(t, p.Matches(other), "the method is not part of the amount comparison")
	})
}
