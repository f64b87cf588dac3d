package keyring_test

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/servicetest"
)

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	kr, err := keyring.New("k1", map[string][]byte{"k1": servicetest.NewKey(t)})
	require.NoError(t, err)

	plaintext := []byte(`{"email":"alice@example.com"}`)
	aad := []byte("event-1")
	kid, ct, err := kr.Seal(plaintext, aad)
	require.NoError(t, err)
	require.Equal(t, "k1", kid)
	require.Len(t, ct, len(plaintext)+keyring.Overhead)
	require.False(t, bytes.Contains(ct, plaintext), "ciphertext contains the plaintext")

	got, err := kr.Open(kid, ct, aad)
	require.NoError(t, err)
	require.Equal(t, plaintext, got)

	// Random nonces: sealing the same message twice gives different bytes.
	_, ct2, err := kr.Seal(plaintext, aad)
	require.NoError(t, err)
	require.NotEqual(t, ct, ct2)

	// The empty message is valid too.
	kid, ct, err = kr.Seal(nil, nil)
	require.NoError(t, err)
	got, err = kr.Open(kid, ct, nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestRotation(t *testing.T) {
	t.Parallel()
	old, next := servicetest.NewKey(t), servicetest.NewKey(t)

	// Step 1: only the old key.
	v1, err := keyring.New("old", map[string][]byte{"old": old})
	require.NoError(t, err)
	kid, ct, err := v1.Seal([]byte("sealed before rotation"), []byte("aad"))
	require.NoError(t, err)
	require.Equal(t, "old", kid)

	// Step 2: both keys, the new one active. Old ciphertexts still open,
	// new ones are sealed under the new key.
	v2, err := keyring.New("new", map[string][]byte{"old": old, "new": next})
	require.NoError(t, err)
	require.Equal(t, "new", v2.ActiveKeyID())
	require.Equal(t, []string{"new", "old"}, v2.KeyIDs())
	got, err := v2.Open(kid, ct, []byte("aad"))
	require.NoError(t, err)
	require.Equal(t, "sealed before rotation", string(got))

	kid2, ct2, err := v2.Seal([]byte("sealed after rotation"), []byte("aad"))
	require.NoError(t, err)
	require.Equal(t, "new", kid2)

	// A reader still on step 1 cannot open the new key's messages: that is why
	// the new key is rolled out (step 2 with the old key active) before use.
	_, err = v1.Open(kid2, ct2, []byte("aad"))
	require.ErrorIs(t, err, keyring.ErrUnknownKey)

	// Step 3: old key retired; its ciphertexts become unreadable.
	v3, err := keyring.New("new", map[string][]byte{"new": next})
	require.NoError(t, err)
	_, err = v3.Open(kid, ct, []byte("aad"))
	require.ErrorIs(t, err, keyring.ErrUnknownKey)
	got, err = v3.Open(kid2, ct2, []byte("aad"))
	require.NoError(t, err)
	require.Equal(t, "sealed after rotation", string(got))
}

func TestOpenRejects(t *testing.T) {
	t.Parallel()
	k1, k2 := servicetest.NewKey(t), servicetest.NewKey(t)
	kr, err := keyring.New("k1", map[string][]byte{"k1": k1, "k2": k2})
	require.NoError(t, err)
	aad := []byte("row-42")
	kid, ct, err := kr.Seal([]byte("secret payload"), aad)
	require.NoError(t, err)

	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	cases := map[string]struct {
		kid string
		ct  []byte
		aad []byte
		err error
	}{
		"tampered nonce":         {kid, flip(ct, 0), aad, keyring.ErrDecrypt},
		"tampered body":          {kid, flip(ct, 13), aad, keyring.ErrDecrypt},
		"tampered tag":           {kid, flip(ct, len(ct)-1), aad, keyring.ErrDecrypt},
		"truncated":              {kid, ct[:len(ct)-1], aad, keyring.ErrDecrypt},
		"shorter than overhead":  {kid, ct[:keyring.Overhead-1], aad, keyring.ErrDecrypt},
		"empty ciphertext":       {kid, nil, aad, keyring.ErrDecrypt},
		"different aad":          {kid, ct, []byte("row-43"), keyring.ErrDecrypt},
		"missing aad":            {kid, ct, nil, keyring.ErrDecrypt},
		"another held key":       {"k2", ct, aad, keyring.ErrDecrypt},
		"unknown key id":         {"k3", ct, aad, keyring.ErrUnknownKey},
		"empty key id (not PII)": {"", ct, aad, keyring.ErrUnknownKey},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := kr.Open(tc.kid, tc.ct, tc.aad)
			require.ErrorIs(t, err, tc.err)
			require.Nil(t, got)
		})
	}
}

func TestNewRejects(t *testing.T) {
	t.Parallel()
	good := servicetest.NewKey(t)
	cases := map[string]struct {
		active string
		keys   map[string][]byte
		want   string
	}{
		"no keys":             {"k1", nil, "no keys"},
		"active missing":      {"k9", map[string][]byte{"k1": good}, `active key "k9" is not among the keys [k1]`},
		"no active":           {"", map[string][]byte{"k1": good}, "no active key id"},
		"short key":           {"k1", map[string][]byte{"k1": good[:16]}, `key "k1" is 16 bytes, want 32`},
		"long key":            {"k1", map[string][]byte{"k1": append(bytes.Clone(good), 0)}, `key "k1" is 33 bytes, want 32`},
		"empty kid":           {"", map[string][]byte{"": good}, "empty key id"},
		"kid with separators": {"a:b", map[string][]byte{"a:b": good}, "character outside"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			kr, err := keyring.New(tc.active, tc.keys)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, kr)
		})
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	k1, k2 := servicetest.NewKey(t), servicetest.NewKey(t)
	std1 := base64.StdEncoding.EncodeToString(k1)
	raw2 := base64.RawStdEncoding.EncodeToString(k2)

	t.Run("std and raw base64 with spaces", func(t *testing.T) {
		t.Parallel()
		kr, err := keyring.Parse(" k1:"+std1+" , k2 : "+raw2+" ", "k2")
		require.NoError(t, err)
		require.Equal(t, []string{"k1", "k2"}, kr.KeyIDs())
		require.Equal(t, "k2", kr.ActiveKeyID())

		// The parsed keys are the given keys: a ciphertext sealed by New with
		// the same bytes opens.
		direct, err := keyring.New("k1", map[string][]byte{"k1": k1})
		require.NoError(t, err)
		kid, ct, err := direct.Seal([]byte("x"), nil)
		require.NoError(t, err)
		got, err := kr.Open(kid, ct, nil)
		require.NoError(t, err)
		require.Equal(t, "x", string(got))
	})

	short := base64.StdEncoding.EncodeToString(k1[:31])
	// 0xfb 0xff repeated encodes to "+/" characters, which the URL alphabet
	// spells "-_": configuration must use the standard alphabet.
	urlKey := base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb, 0xff}, keyring.KeySize/2))
	require.Contains(t, urlKey, "-")
	cases := map[string]struct {
		spec, active, want string
	}{
		"empty spec":        {"", "k1", "entry 1 is empty"},
		"trailing comma":    {"k1:" + std1 + ",", "k1", "entry 2 is empty"},
		"no colon":          {std1, "k1", "entry 1 is not kid:base64key"},
		"empty kid":         {":" + std1, "k1", "entry 1: empty key id"},
		"duplicate kid":     {"k1:" + std1 + ",k1:" + raw2, "k1", `key id "k1" appears twice`},
		"not base64":        {"k1:" + std1[:40] + "!!!=", "k1", `key "k1": not valid standard base64`},
		"url alphabet":      {"k1:" + urlKey, "k1", `key "k1": not valid standard base64`},
		"wrong length":      {"k1:" + short, "k1", `key "k1": decodes to 31 bytes, need at least 32`},
		"active not in set": {"k1:" + std1, "k2", `active key "k2" is not among the keys [k1]`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			kr, err := keyring.Parse(tc.spec, tc.active)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, kr)
			// Errors never carry key material, in any encoding.
			for _, secret := range []string{std1, raw2, urlKey, std1[:8], raw2[:8], string(k1), fmt.Sprintf("%x", k1)} {
				require.NotContains(t, err.Error(), secret)
			}
		})
	}
}

func TestPrintingHidesKeys(t *testing.T) {
	t.Parallel()
	key := servicetest.NewKey(t)
	kr, err := keyring.New("k1", map[string][]byte{"k1": key})
	require.NoError(t, err)
	for _, s := range []string{fmt.Sprint(kr), fmt.Sprintf("%v", kr), fmt.Sprintf("%+v", kr), fmt.Sprintf("%#v", kr), kr.String()} {
		require.Equal(t, "keyring(active=k1 keys=[k1])", s)
	}
}

func TestSealValue(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, keyring.KeySize)
	k2 := bytes.Repeat([]byte{2}, keyring.KeySize)
	old, err := keyring.New("k1", map[string][]byte{"k1": k1})
	require.NoError(t, err)
	rotated, err := keyring.New("k2", map[string][]byte{"k1": k1, "k2": k2})
	require.NoError(t, err)
	aad := []byte("idem:abc")

	v, err := old.SealValue([]byte("12 Main Street"), aad)
	require.NoError(t, err)
	require.NotContains(t, string(v), "Main Street")
	kid, err := keyring.ValueKeyID(v)
	require.NoError(t, err)
	require.Equal(t, "k1", kid)

	t.Run("a rotated keyring still opens it and reports the old key", func(t *testing.T) {
		pt, kid, err := rotated.OpenValue(v, aad)
		require.NoError(t, err)
		require.Equal(t, "12 Main Street", string(pt))
		require.Equal(t, "k1", kid)
	})
	t.Run("failures name the key", func(t *testing.T) {
		retired, err := keyring.New("k2", map[string][]byte{"k2": k2})
		require.NoError(t, err)
		_, _, err = retired.OpenValue(v, aad)
		require.ErrorIs(t, err, keyring.ErrUnknownKey)
		require.ErrorContains(t, err, `"k1"`)

		_, _, err = rotated.OpenValue(v, []byte("idem:other"))
		require.ErrorIs(t, err, keyring.ErrDecrypt)
		require.ErrorContains(t, err, `key "k1"`)

		tampered := bytes.Clone(v)
		tampered[len(tampered)-1] ^= 1
		_, _, err = rotated.OpenValue(tampered, aad)
		require.ErrorIs(t, err, keyring.ErrDecrypt)
	})
	t.Run("what is not a sealed value is refused", func(t *testing.T) {
		for name, in := range map[string][]byte{
			"empty":            nil,
			"protobuf":         {0x08, 0x05},
			"no key id":        {0x01, 0x00, 0xff},
			"short key id":     {0x01, 0x09, 'k'},
			"bad key id bytes": {0x01, 0x01, ' ', 0, 0},
		} {
			_, _, err := rotated.OpenValue(in, aad)
			require.ErrorIs(t, err, keyring.ErrNotSealed, name)
			require.False(t, keyring.IsSealedValue(in), name)
		}
		require.True(t, keyring.IsSealedValue(v))
	})
}
