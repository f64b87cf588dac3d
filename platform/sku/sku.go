// Package sku is what a stock-keeping unit id looks like, shared by the
// inventory that owns the catalog and the order service that checks a cart
// before asking it. It imports only the standard library, so domain
// packages may use it.
package sku

import "strconv"

// MaxLen matches the products.sku CHECK constraint.
const MaxLen = 64

// Rule says what Valid accepts, for error messages.
var Rule = "must be 1 to " + strconv.Itoa(MaxLen) + " characters A-Z, 0-9 and '-', not starting with '-'"

// Valid reports whether s is a SKU: 1 to MaxLen characters of upper-case
// letters, digits and '-', not starting with '-'.
func Valid(s string) bool {
	if len(s) == 0 || len(s) > MaxLen || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}
