package order

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Address is a postal shipping address. It is personal data: events carry it
// encrypted.
type Address struct {
	Name        string
	Line1       string
	Line2       string
	City        string
	PostalCode  string
	CountryCode string // ISO 3166-1 alpha-2, upper case
}

// Normalize returns a with surrounding spaces trimmed and the country code
// upper-cased, the form in which addresses are validated and stored.
func (a Address) Normalize() Address {
	return Address{
		Name:        strings.TrimSpace(a.Name),
		Line1:       strings.TrimSpace(a.Line1),
		Line2:       strings.TrimSpace(a.Line2),
		City:        strings.TrimSpace(a.City),
		PostalCode:  strings.TrimSpace(a.PostalCode),
		CountryCode: strings.ToUpper(strings.TrimSpace(a.CountryCode)),
	}
}

// Validate checks a normalized address. field is the address's name in the
// request ("shipping_address"); errors name the sub-field under it.
func (a Address) Validate(field string) error {
	for _, f := range []struct {
		name, value string
		required    bool
		max         int
	}{
		{"name", a.Name, true, 200},
		{"line1", a.Line1, true, 200},
		{"line2", a.Line2, false, 200},
		{"city", a.City, true, 100},
		{"postal_code", a.PostalCode, true, 20},
	} {
		if err := text(field+"."+f.name, f.value, f.required, f.max); err != nil {
			return err
		}
	}
	if !isCountryCode(a.CountryCode) {
		return invalid(field+".country_code", "must be an ISO 3166-1 alpha-2 code")
	}
	return nil
}

// text checks a free-text field: valid UTF-8 without control characters, at
// most max characters, present if required.
func text(field, v string, required bool, max int) error {
	switch {
	case v == "" && required:
		return invalid(field, "required")
	case !utf8.ValidString(v):
		return invalid(field, "must be valid UTF-8")
	case utf8.RuneCountInString(v) > max:
		return invalid(field, "must be at most "+strconv.Itoa(max)+" characters")
	case strings.ContainsFunc(v, isControl):
		return invalid(field, "must not contain control characters")
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

func isCountryCode(s string) bool { return countries[s] }
