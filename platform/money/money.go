// Package money is the amount type and the accepted currencies that the
// order, payment and inventory domains share. It imports only the standard
// library, so domain packages may use it.
package money

// Money is an amount in the minor unit of an ISO 4217 currency (cents for
// USD; JPY has none, its minor unit is the yen).
type Money struct {
	Currency string
	Minor    int64
}

// currencies is the set of ISO 4217 codes this system accepts.
var currencies = map[string]bool{
	"USD": true, "EUR": true, "GBP": true, "JPY": true, "CHF": true, "CAD": true, "AUD": true,
}

// Accepted lists the accepted codes, for error messages.
const Accepted = "USD, EUR, GBP, JPY, CHF, CAD, AUD"

// Known reports whether code is an accepted currency code (upper case).
func Known(code string) bool { return currencies[code] }
