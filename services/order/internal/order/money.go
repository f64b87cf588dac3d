package order

// currencies is the set of ISO 4217 codes this system accepts.
var currencies = map[string]bool{
	"USD": true, "EUR": true, "GBP": true, "JPY": true, "CHF": true, "CAD": true, "AUD": true,
}

// KnownCurrency reports whether code is an accepted ISO 4217 currency code
// (upper case).
func KnownCurrency(code string) bool { return currencies[code] }

// Money is an amount in the currency's minor unit (cents for USD). Amounts in
// this system are never negative.
type Money struct {
	Currency string
	Minor    int64
}
