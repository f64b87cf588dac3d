package optlock

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
)

// Errors of Verify. A malformed token is not a token at all (bad input:
// InvalidArgument); an invalid one is well formed but signed with an
// unknown key or with a signature that does not match (forged, from a
// rotated-out key, or issued for another aggregate), which callers report
// as a conflict, like a stale one: read again.
var (
	ErrMalformedToken = errors.New("optlock: malformed version token")
	ErrInvalidToken   = errors.New("optlock: invalid version token")
)

const (
	tokenFormat = 1  // first byte of every token; a new layout gets a new number
	macSize     = 16 // truncated HMAC-SHA256: 128 bits is ample against forgery
	minKeySize  = 32
	maxKIDSize  = 255
)

// macLabel separates these MACs from any other use of the same key.
const macLabel = "goodgo/optlock/version-token/v1"

// Signer issues and verifies opaque, HMAC-signed version tokens so that
// clients can present the version they read without being able to choose it.
//
// A token is base64url (no padding) of
//
//	format(1) | len(kid)(1) | kid | version(8, big endian) | mac(16)
//
// where mac = HMAC-SHA256(key[kid], domain | kid | aggregate type | id |
// version), every variable-length part length-prefixed, truncated to 16
// bytes. The version is readable but cannot be altered; the MAC binds it to
// one aggregate, so a token for one order does not work for another.
//
// Several keys verify, one signs: to rotate, add the new key, make it active
// on every replica, and remove the old key once tokens signed with it no
// longer matter (they are short-lived: a read followed by an update).
// A Signer is safe for concurrent use.
type Signer struct {
	active string
	keys   map[string][]byte
}

// NewSigner returns a Signer that signs with keys[active] and verifies with
// any of keys. Each key must be at least 32 bytes; key ids must be 1–255
// bytes. The keys are copied.
func NewSigner(active string, keys map[string][]byte) (*Signer, error) {
	if _, ok := keys[active]; !ok {
		return nil, fmt.Errorf("optlock: active key id %q is not among the keys", active)
	}
	s := &Signer{active: active, keys: make(map[string][]byte, len(keys))}
	for kid, key := range keys {
		if len(kid) == 0 || len(kid) > maxKIDSize {
			return nil, fmt.Errorf("optlock: key id %q must be 1-%d bytes", kid, maxKIDSize)
		}
		if len(key) < minKeySize {
			return nil, fmt.Errorf("optlock: key %q has %d bytes, need at least %d", kid, len(key), minKeySize)
		}
		s.keys[kid] = append([]byte(nil), key...)
	}
	return s, nil
}

// Token returns the token for version of the aggregate (aggregateType, id),
// signed with the active key.
func (s *Signer) Token(aggregateType, id string, version int64) string {
	buf := make([]byte, 0, 2+len(s.active)+8+macSize)
	buf = append(buf, tokenFormat, byte(len(s.active)))
	buf = append(buf, s.active...)
	buf = binary.BigEndian.AppendUint64(buf, uint64(version))
	buf = append(buf, s.mac(s.active, aggregateType, id, version)...)
	return base64.RawURLEncoding.EncodeToString(buf)
}

// Verify returns the version carried by token if token was issued by Token
// for the same aggregateType and id with a key this Signer holds. Otherwise
// it returns an error wrapping [ErrMalformedToken] (not a token of this
// format) or [ErrInvalidToken] (unknown key, signature mismatch). The MAC
// comparison takes constant time.
func (s *Signer) Verify(aggregateType, id, token string) (int64, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return 0, fmt.Errorf("%w: not base64url", ErrMalformedToken)
	}
	if len(raw) < 2 || raw[0] != tokenFormat {
		return 0, fmt.Errorf("%w: unknown format", ErrMalformedToken)
	}
	kidLen := int(raw[1])
	if len(raw) != 2+kidLen+8+macSize {
		return 0, fmt.Errorf("%w: wrong length", ErrMalformedToken)
	}
	kid := string(raw[2 : 2+kidLen])
	if _, ok := s.keys[kid]; !ok {
		return 0, fmt.Errorf("%w: unknown key id", ErrInvalidToken)
	}
	version := int64(binary.BigEndian.Uint64(raw[2+kidLen:]))
	if !hmac.Equal(raw[2+kidLen+8:], s.mac(kid, aggregateType, id, version)) {
		return 0, fmt.Errorf("%w: signature mismatch", ErrInvalidToken)
	}
	return version, nil
}

// mac computes the truncated MAC; kid must be a known key id.
func (s *Signer) mac(kid, aggregateType, id string, version int64) []byte {
	var msg []byte
	for _, part := range []string{macLabel, kid, aggregateType, id} {
		msg = binary.BigEndian.AppendUint32(msg, uint32(len(part)))
		msg = append(msg, part...)
	}
	msg = binary.BigEndian.AppendUint64(msg, uint64(version))
	h := hmac.New(sha256.New, s.keys[kid])
	h.Write(msg)
	return h.Sum(nil)[:macSize]
}
