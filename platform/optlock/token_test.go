package optlock_test

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/optlock"
)

var (
	key1 = bytes.Repeat([]byte{1}, 32)
	key2 = bytes.Repeat([]byte{2}, 48)
)

func newSigner(t *testing.T, active string, keys map[string][]byte) *optlock.Signer {
	t.Helper()
	s, err := optlock.NewSigner(active, keys)
	require.NoError(t, err)
	return s
}

func TestSignerRoundTrip(t *testing.T) {
	s := newSigner(t, "k1", map[string][]byte{"k1": key1})
	for _, version := range []int64{0, 1, 42, 1 << 40, -1} {
		tok := s.Token("order", "0b6a3f6e-1", version)
		got, err := s.Verify("order", "0b6a3f6e-1", tok)
		require.NoError(t, err)
		require.Equal(t, version, got)
	}
}

func TestSignerRejects(t *testing.T) {
	s := newSigner(t, "k1", map[string][]byte{"k1": key1})
	tok := s.Token("order", "o-1", 7)

	sameKIDOtherKey := newSigner(t, "k1", map[string][]byte{"k1": key2})
	otherKID := newSigner(t, "k9", map[string][]byte{"k9": key1})

	// A token of this format with a wrong signature is invalid (a conflict
	// for the client); anything else is not a token at all (malformed).
	invalid, malformed := optlock.ErrInvalidToken, optlock.ErrMalformedToken
	tests := []struct {
		name          string
		verifier      *optlock.Signer
		aggregateType string
		id            string
		token         string
		want          error
	}{
		{"token of another aggregate id", s, "order", "o-2", tok, invalid},
		{"token of another aggregate type", s, "payment", "o-1", tok, invalid},
		{"id and type boundary shifted", s, "orde", "ro-1", tok, invalid},
		{"same key id but a different secret", sameKIDOtherKey, "order", "o-1", tok, invalid},
		{"unknown key id", otherKID, "order", "o-1", tok, invalid},
		{"empty token", s, "order", "o-1", "", malformed},
		{"not base64url", s, "order", "o-1", "!!!", malformed},
		{"padded base64", s, "order", "o-1", tok + "=", malformed},
		{"truncated", s, "order", "o-1", tok[:len(tok)-2], malformed},
		{"extended", s, "order", "o-1", tok + "AA", malformed},
		{"raw version number", s, "order", "o-1", "7", malformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.verifier.Verify(tt.aggregateType, tt.id, tt.token)
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestSignerRejectsEveryTamperedByte(t *testing.T) {
	s := newSigner(t, "k1", map[string][]byte{"k1": key1})
	raw, err := base64.RawURLEncoding.DecodeString(s.Token("order", "o-1", 7))
	require.NoError(t, err)
	for i := range raw {
		for _, flip := range []byte{0x01, 0x80, 0xff} {
			tampered := bytes.Clone(raw)
			tampered[i] ^= flip
			_, err := s.Verify("order", "o-1", base64.RawURLEncoding.EncodeToString(tampered))
			// The format byte and the key id's length make it malformed;
			// every other byte breaks the signature.
			want := optlock.ErrInvalidToken
			if i < 2 {
				want = optlock.ErrMalformedToken
			}
			require.ErrorIs(t, err, want, "byte %d xor %#x", i, flip)
		}
	}
}

func TestSignerKeyRotation(t *testing.T) {
	before := newSigner(t, "k1", map[string][]byte{"k1": key1})
	during := newSigner(t, "k2", map[string][]byte{"k1": key1, "k2": key2})
	after := newSigner(t, "k2", map[string][]byte{"k2": key2})

	old := before.Token("order", "o-1", 3)
	v, err := during.Verify("order", "o-1", old)
	require.NoError(t, err, "tokens signed with the previous key still verify during rotation")
	require.Equal(t, int64(3), v)

	fresh := during.Token("order", "o-1", 4)
	v, err = after.Verify("order", "o-1", fresh)
	require.NoError(t, err)
	require.Equal(t, int64(4), v)
	_, err = before.Verify("order", "o-1", fresh)
	require.ErrorIs(t, err, optlock.ErrInvalidToken, "a replica without the new key rejects its tokens")

	_, err = after.Verify("order", "o-1", old)
	require.ErrorIs(t, err, optlock.ErrInvalidToken, "a removed key no longer verifies")
}

func TestNewSignerValidates(t *testing.T) {
	tests := []struct {
		name   string
		active string
		keys   map[string][]byte
	}{
		{"active key missing", "k2", map[string][]byte{"k1": key1}},
		{"no keys", "k1", nil},
		{"key shorter than 32 bytes", "k1", map[string][]byte{"k1": key1[:31]}},
		{"short inactive key", "k1", map[string][]byte{"k1": key1, "k0": []byte("short")}},
		{"empty key id", "", map[string][]byte{"": key1}},
		{"key id longer than 255 bytes", string(bytes.Repeat([]byte("k"), 256)), map[string][]byte{string(bytes.Repeat([]byte("k"), 256)): key1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := optlock.NewSigner(tt.active, tt.keys)
			require.Error(t, err)
		})
	}
}

func TestSignerCopiesKeys(t *testing.T) {
	key := bytes.Clone(key1)
	s := newSigner(t, "k1", map[string][]byte{"k1": key})
	tok := s.Token("order", "o-1", 1)
	key[0] ^= 0xff // the caller reusing its buffer must not change the Signer
	_, err := s.Verify("order", "o-1", tok)
	require.NoError(t, err)
}
