package idempotency

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A stored record is one Redis string, so that a claim is one native
// command (SET NX PX GET) instead of a script:
//
//	state        1 byte: 'p' in progress, 'c' completed
//	owner        1 byte of length, then the owner token
//	fingerprint  1 byte of length, then the request's fingerprint
//
// and, once completed, what the complete script appends:
//
//	st           uvarint length, then the google.rpc.Status, sealed
//	r            the rest: the google.protobuf.Any of the response, sealed;
//	             empty when there is none
//
// The scripts find the owner at a fixed place (after the state byte), so
// they compare it without parsing the rest.
const (
	stateInProgress = 'p'
	stateCompleted  = 'c'
)

// errCorrupt reports a stored value that is not a record.
var errCorrupt = errors.New("corrupt record")

// maxField is the longest owner or fingerprint a record holds: one byte of
// length.
const maxField = 255

// begin writes a record's fixed part, state and owner field, into a
// buffer with room for extra more bytes: the one place the layout's head
// is written.
func begin(state byte, owner string, extra int) []byte {
	b := make([]byte, 0, 2+len(owner)+extra)
	b = append(b, state, byte(len(owner)))
	return append(b, owner...)
}

// claimedBy is how the record of owner's claim in progress begins; without
// its state byte, it is the owner field the complete script compares.
func claimedBy(owner string) []byte {
	return begin(stateInProgress, owner, 0)
}

// claimValue is the record of owner's claim in progress of a request with
// fingerprint.
func claimValue(owner string, fingerprint []byte) []byte {
	b := begin(stateInProgress, owner, 1+len(fingerprint))
	return append(append(b, byte(len(fingerprint))), fingerprint...)
}

// completion is what completing a claim appends to its record: the sealed
// status and the sealed response.
func completion(st, resp []byte) []byte {
	b := make([]byte, 0, binary.MaxVarintLen64+len(st)+len(resp))
	b = binary.AppendUvarint(b, uint64(len(st)))
	return append(append(b, st...), resp...)
}

// rawRecord is a stored record split into its fields; the sealed fields
// are still sealed.
type rawRecord struct {
	state       byte
	owner       string
	fingerprint string
	st, r       string
}

// completedWith is the record raw completed with the sealed status st and
// response resp.
func (raw rawRecord) completedWith(st, resp []byte) []byte {
	tail := completion(st, resp)
	b := begin(stateCompleted, raw.owner, 1+len(raw.fingerprint)+len(tail))
	b = append(append(b, byte(len(raw.fingerprint))), raw.fingerprint...)
	return append(b, tail...)
}

// parseRecord splits a stored record into its fields.
func parseRecord(v string) (rawRecord, error) {
	var rec rawRecord
	if len(v) < 2 || (v[0] != stateInProgress && v[0] != stateCompleted) {
		return rec, errCorrupt
	}
	rec.state = v[0]
	rest := v[1:]
	var ok bool
	if rec.owner, rest, ok = lengthPrefixed(rest); !ok {
		return rec, errCorrupt
	}
	if rec.fingerprint, rest, ok = lengthPrefixed(rest); !ok {
		return rec, errCorrupt
	}
	if rec.state == stateInProgress {
		if rest != "" {
			return rec, errCorrupt
		}
		return rec, nil
	}
	n, size := binary.Uvarint([]byte(rest[:min(len(rest), binary.MaxVarintLen64)]))
	// Only the shortest encoding of the length: one record, one encoding.
	if size <= 0 || size != uvarintLen(n) || n > uint64(len(rest)-size) {
		return rec, errCorrupt
	}
	rest = rest[size:]
	rec.st, rec.r = rest[:n], rest[n:]
	return rec, nil
}

// uvarintLen is the length of n's shortest uvarint encoding.
func uvarintLen(n uint64) int {
	size := 1
	for ; n >= 0x80; n >>= 7 {
		size++
	}
	return size
}

// lengthPrefixed splits off a field of one byte of length and that many
// bytes.
func lengthPrefixed(s string) (field, rest string, ok bool) {
	if s == "" || int(s[0]) > len(s)-1 {
		return "", "", false
	}
	n := int(s[0])
	return s[1 : 1+n], s[1+n:], true
}

// checkFields refuses an owner or fingerprint longer than a record holds.
func checkFields(owner string, fingerprint []byte) error {
	switch {
	case owner == "":
		return errors.New("empty owner token")
	case len(owner) > maxField:
		return fmt.Errorf("owner token of %d bytes, at most %d", len(owner), maxField)
	case len(fingerprint) > maxField:
		return fmt.Errorf("fingerprint of %d bytes, at most %d", len(fingerprint), maxField)
	}
	return nil
}
