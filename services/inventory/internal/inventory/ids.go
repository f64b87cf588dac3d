package inventory

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/goodgo/goodgo/platform/sku"
)

// ValidateSKU checks that s is a SKU: 1–64 characters of upper-case
// letters, digits and '-', not starting with '-'. field names the request
// field in the error.
func ValidateSKU(field, s string) error {
	if s == "" {
		return invalid(field, "required")
	}
	if !sku.Valid(s) {
		return invalid(field, "%s", sku.Rule)
	}
	return nil
}

// ParseUUID checks that s is a UUID in its canonical 8-4-4-4-12 hex form
// (either case) and returns it in lower case. field names the request field
// in the error. Only the canonical form is accepted so that one order has
// one spelling in keys, logs and events.
func ParseUUID(field, s string) (string, error) {
	if s == "" {
		return "", invalid(field, "required")
	}
	if len(s) != 36 {
		return "", invalid(field, "not a UUID")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return "", invalid(field, "not a UUID")
			}
		default:
			if !isHex(c) {
				return "", invalid(field, "not a UUID")
			}
		}
	}
	return strings.ToLower(s), nil
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' {
			return false
		}
	}
	return true
}
