package token_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/token"
)

// A bearer token verified once is remembered until it expires: after its
// exp it is refused, though its entry would otherwise still be there.
func TestVerifierCachedTokenRefusedAfterExpiry(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, "k1")
	name := t.TempDir() + "/jwks.json"
	writeJWKS(t, name, jwks(t, iss))
	v, err := token.NewVerifier(t.Context(), token.Config{Issuer: issuerName, Audience: audience, JWKSFile: name, Leeway: time.Millisecond})
	require.NoError(t, err)
	now := time.Now()
	v.SetClock(func() time.Time { return now })

	raw := mint(t, iss, "alice", []string{"admin"}, 10*time.Second)
	c, err := v.Verify(t.Context(), raw)
	require.NoError(t, err)
	require.Equal(t, 1, v.CachedTokens())
	c.Roles[0] = "mallory" // the caller's copy
	c, err = v.Verify(t.Context(), raw)
	require.NoError(t, err)
	require.Equal(t, []string{"admin"}, c.Roles, "a cached token's claims are the caller's own copy")

	now = c.Expires.Add(time.Second)
	_, err = v.Verify(t.Context(), raw)
	require.ErrorIs(t, err, token.ErrExpired)
	require.Zero(t, v.CachedTokens(), "refusals are not cached")
}

// A remembered token is verified again after 30 seconds even if it is
// valid for longer, and at once when the key set changes.
func TestVerifierCacheBoundedInTimeAndKeys(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, "k1")
	v, file := fileVerifier(t, iss)
	now := time.Now()
	v.SetClock(func() time.Time { return now })
	raw := mint(t, iss, "alice", nil, time.Hour)
	_, err := v.Verify(t.Context(), raw)
	require.NoError(t, err)
	require.Equal(t, 1, v.CachedTokens())

	now = now.Add(31 * time.Second)
	_, err = v.Verify(t.Context(), raw)
	require.NoError(t, err, "verified again, still valid")

	// The issuer's key is removed from the set: the token is refused as
	// soon as the new file is read, though verified a moment ago.
	writeJWKS(t, file, jwks(t, newIssuer(t, "k2")))
	now = now.Add(2 * time.Second) // the file is re-read at most once a second
	_, err = v.Verify(t.Context(), raw)
	require.ErrorIs(t, err, token.ErrSignature)
	require.Zero(t, v.CachedTokens())
}

func TestVerifierCacheBoundedInSize(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, "k1")
	v, _ := fileVerifier(t, iss)
	v.SetMaxCachedTokens(8)
	var toks []string
	for i := range 20 {
		toks = append(toks, mint(t, iss, "user-"+string(rune('a'+i)), nil, time.Hour))
	}
	for range 2 {
		for i, raw := range toks {
			c, err := v.Verify(t.Context(), raw)
			require.NoError(t, err)
			require.Equal(t, "user-"+string(rune('a'+i)), c.Subject)
			require.LessOrEqual(t, v.CachedTokens(), 8)
		}
	}
}
