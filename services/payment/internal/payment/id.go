package payment

import (
	"encoding/hex"
)

// ID is a UUID in its 16-byte binary form. It converts for free to and from
// github.com/google/uuid.UUID, which the adapters use; the domain keeps to
// the standard library.
type ID [16]byte

// ParseID parses the canonical textual form of a UUID
// (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx, hex digits in either case). The
// braced and urn: forms are not accepted: ids travel between services as
// canonical strings, and one spelling per id keeps idempotency fingerprints
// and logs comparable.
func ParseID(s string) (ID, bool) {
	var id ID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, false
	}
	compact := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(id[:], []byte(compact)); err != nil {
		return ID{}, false
	}
	return id, true
}

// String returns the canonical lower-case textual form.
func (id ID) String() string {
	var buf [36]byte
	hex.Encode(buf[0:8], id[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], id[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], id[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], id[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:36], id[10:16])
	return string(buf[:])
}

// IsZero reports whether id is the nil UUID.
func (id ID) IsZero() bool { return id == ID{} }

// parseIDField parses a required id field, naming it in the error.
func parseIDField(field, s string) (ID, error) {
	if s == "" {
		return ID{}, fieldErr(field, "required")
	}
	id, ok := ParseID(s)
	if !ok {
		return ID{}, fieldErr(field, "not a UUID")
	}
	if id.IsZero() {
		return ID{}, fieldErr(field, "must not be the nil UUID")
	}
	return id, nil
}
