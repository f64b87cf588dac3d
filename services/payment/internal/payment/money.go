package payment

import "github.com/goodgo/goodgo/platform/money"

// Money is an amount in minor units of a currency. Payments only ever carry
// positive amounts; a refund amount of zero means "nothing refunded".
type Money = money.Money

// validateAmount checks a payment amount: a known currency and a positive
// number of minor units. field is the request field path of the amount.
func validateAmount(field string, m *Money) error {
	if m == nil {
		return fieldErr(field, "required")
	}
	switch {
	case m.Currency == "":
		return fieldErr(field+".currency_code", "required")
	case !money.Known(m.Currency):
		return fieldErr(field+".currency_code", "unknown currency %q (accepted: %s)", truncate(m.Currency, 8), money.Accepted)
	case m.Minor <= 0:
		return fieldErr(field+".amount_minor", "must be positive")
	}
	return nil
}

// truncate keeps client input echoed in an error message short.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
