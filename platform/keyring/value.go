package keyring

import (
	"errors"
	"fmt"
)

// valueVersion starts every sealed value. No protobuf message starts with
// it (a tag byte of 0x01 would be field number 0, which is invalid), so a
// reader can tell a sealed value from a protobuf stored in the clear by an
// earlier release.
const valueVersion byte = 0x01

// ErrNotSealed is returned by OpenValue for bytes that are not a sealed
// value.
var ErrNotSealed = errors.New("keyring: not a sealed value")

// SealValue seals plaintext under the active key into one self-describing
// value, for stores with no column beside it for the key id (a Redis hash
// field): 0x01 || len(kid) || kid || nonce || ciphertext || tag. aad binds
// the value to where it is stored, as in Seal.
func (k *Keyring) SealValue(plaintext, aad []byte) ([]byte, error) {
	kid := k.active
	out := make([]byte, 0, 2+len(kid)+len(plaintext)+Overhead)
	out = append(out, valueVersion, byte(len(kid)))
	out = append(out, kid...)
	aead := k.aeads[kid]
	return aead.Seal(out, nil, plaintext, aad), nil //nolint:gosec // G407 misreads the random-nonce AEAD's nil nonce as hardcoded.
}

// OpenValue opens a value of SealValue with the same aad and returns the
// plaintext and the id of the key that sealed it. Errors wrap ErrNotSealed,
// ErrUnknownKey or ErrDecrypt, and name the key id when there is one.
func (k *Keyring) OpenValue(value, aad []byte) (plaintext []byte, keyID string, err error) {
	kid, ct, err := splitValue(value)
	if err != nil {
		return nil, "", err
	}
	plaintext, err = k.Open(kid, ct, aad)
	return plaintext, kid, err
}

func splitValue(v []byte) (kid string, ciphertext []byte, err error) {
	if len(v) < 2 || v[0] != valueVersion {
		return "", nil, ErrNotSealed
	}
	n := int(v[1])
	if n == 0 || len(v) < 2+n {
		return "", nil, fmt.Errorf("%w: truncated key id", ErrNotSealed)
	}
	kid = string(v[2 : 2+n])
	if err := validID(kid); err != nil {
		return "", nil, fmt.Errorf("%w: %w", ErrNotSealed, err)
	}
	return kid, v[2+n:], nil
}
