package optlock_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/optlock"
)

// FuzzVersionTokenVerify feeds arbitrary aggregates and tokens to Verify:
// it must never panic; every error wraps ErrMalformedToken or
// ErrInvalidToken; and it succeeds only for a token this Signer (with its
// active key or the older one it still verifies) produced for that very
// aggregate and the version returned. (base64 decoding ignores newlines and
// the unused low bits of the last character, so the same token may be
// spelled in more than one way: what must match is the decoded token.)
func FuzzVersionTokenVerify(f *testing.F) {
	keys := map[string][]byte{"k1": bytes.Repeat([]byte{1}, 32), "k0": bytes.Repeat([]byte{7}, 40)}
	active, err := optlock.NewSigner("k1", keys)
	require.NoError(f, err)
	old, err := optlock.NewSigner("k0", keys)
	require.NoError(f, err)
	stranger, err := optlock.NewSigner("k1", map[string][]byte{"k1": bytes.Repeat([]byte{2}, 32)})
	require.NoError(f, err)

	f.Add("order", "o-1", active.Token("order", "o-1", 7))
	f.Add("order", "o-1", active.Token("order", "o-1", 0))
	f.Add("order", "o-1", active.Token("order", "o-1", -1))
	f.Add("order", "o-1", old.Token("order", "o-1", 1<<40))
	f.Add("order", "o-2", active.Token("order", "o-1", 7))
	f.Add("orde", "ro-1", active.Token("order", "o-1", 7))
	f.Add("order", "o-1", stranger.Token("order", "o-1", 7))
	f.Add("", "", active.Token("", "", 0))
	f.Add("order", "o-1", "")
	f.Add("order", "o-1", "!!!")
	f.Add("order", "o-1", "AQ")
	f.Add("order", "o-1", "AQJrMQAAAAAAAAAH")
	f.Add("order", "o-1", active.Token("order", "o-1", 7)+"=")

	f.Fuzz(func(t *testing.T, aggregateType, id, tok string) {
		v, err := active.Verify(aggregateType, id, tok)
		if err != nil {
			require.Zero(t, v)
			require.True(t, errors.Is(err, optlock.ErrMalformedToken) || errors.Is(err, optlock.ErrInvalidToken),
				"unclassified error %v", err)
			require.False(t, errors.Is(err, optlock.ErrMalformedToken) && errors.Is(err, optlock.ErrInvalidToken))
			return
		}
		got, err := base64.RawURLEncoding.DecodeString(tok)
		require.NoError(t, err)
		var issued bool
		for _, s := range []*optlock.Signer{active, old} {
			want, err := base64.RawURLEncoding.DecodeString(s.Token(aggregateType, id, v))
			require.NoError(t, err)
			issued = issued || bytes.Equal(got, want)
		}
		require.True(t, issued, "Verify accepted %q for (%q, %q) version %d, which the signer never issued", tok, aggregateType, id, v)

		// The token binds the aggregate: any other id is refused.
		_, err = active.Verify(aggregateType, id+"x", tok)
		require.ErrorIs(t, err, optlock.ErrInvalidToken)
	})
}
