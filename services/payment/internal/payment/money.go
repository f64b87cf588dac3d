package payment

// Currencies is the set of ISO 4217 codes the system accepts. Amounts are in
// each currency's minor unit (JPY has none: its minor unit is the yen).
var Currencies = map[string]bool{
	"USD": true, "EUR": true, "GBP": true, "JPY": true,
	"CHF": true, "CAD": true, "AUD": true,
}

// Money is an amount in minor units of a currency. Payments only ever carry
// positive amounts; a refund amount of zero means "nothing refunded".
type Money struct {
	Currency string
	Minor    int64
}

// validateAmount checks a payment amount: a known currency and a positive
// number of minor units. field is the request field path of the amount.
func validateAmount(field string, m *Money) error {
	if m == nil {
		return fieldErr(field, "required")
	}
	switch {
	case m.Currency == "":
		return fieldErr(field+".currency_code", "required")
	case !Currencies[m.Currency]:
		return fieldErr(field+".currency_code", "unknown currency %q (accepted: USD, EUR, GBP, JPY, CHF, CAD, AUD)", truncate(m.Currency, 8))
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
