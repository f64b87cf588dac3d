package token_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/token"
)

// signedContent is a compact JWS without its signature: what the signature
// covers. Two tokens with the same signed content say the same thing.
func signedContent(raw string) string {
	i := strings.LastIndexByte(raw, '.')
	if i < 0 {
		return raw
	}
	return raw[:i]
}

// FuzzVerify feeds arbitrary strings to Verifier.Verify: it must never
// panic, every refusal must wrap one of the documented reasons, and a
// success must be a token this test's issuer minted (subject "fuzz-…", its
// signed content one of the minted tokens').
func FuzzVerify(f *testing.F) {
	iss := newIssuer(f, "fuzz")
	v, _ := fileVerifier(f, iss)
	key := issuerKey(f, iss)

	minted := map[string]bool{}
	add := func(raw string) {
		minted[signedContent(raw)] = true
		f.Add(raw)
	}
	add(mint(f, iss, "fuzz-alice", nil, time.Hour))
	add(mint(f, iss, "fuzz-bob", []string{"admin", "operator", "root"}, time.Hour))
	add(signES256(f, key, map[string]any{"alg": "ES256", "kid": "fuzz"}, map[string]any{
		"iss": issuerName, "aud": audience, "sub": "fuzz-carol", "exp": time.Now().Add(time.Hour).Unix(), "scope": "openid operator",
	}))
	// Refused ones, as starting points.
	f.Add(mint(f, iss, "fuzz-dave", nil, -time.Hour))
	wrongAud, err := iss.MintFor("elsewhere", "fuzz-erin", nil, time.Hour)
	require.NoError(f, err)
	f.Add(wrongAud)
	f.Add(mint(f, newIssuer(f, "fuzz"), "mallory", []string{"admin"}, time.Hour))
	f.Add(b64.EncodeToString([]byte(`{"alg":"none","kid":"fuzz"}`)) + "." + segment(f, userClaims("mallory")) + ".")
	f.Add(signHS256(f, jwks(f, iss), map[string]any{"alg": "HS256", "kid": "fuzz"}, userClaims("mallory")))
	f.Add("")
	f.Add("..")
	f.Add("a.b.c")
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.")
	f.Add(strings.Repeat("a", token.MaxLength-2) + "..")

	f.Fuzz(func(t *testing.T, raw string) {
		c, err := v.Verify(t.Context(), raw)
		if err != nil {
			requireReason(t, err)
			require.Zero(t, c)
			return
		}
		require.True(t, strings.HasPrefix(c.Subject, "fuzz-"), "verified a token nobody minted: subject %q", c.Subject)
		require.True(t, minted[signedContent(raw)], "verified a token whose signed content was never minted: %q", raw)
		for _, r := range c.Roles {
			require.Contains(t, []string{"operator", "admin"}, r)
		}
	})
}

// FuzzAssertionVerify feeds arbitrary strings to AssertionVerifier.Verify:
// it must never panic, and it may succeed only for an assertion the
// orchestrator signed for this callee (the same signed content; the
// signature's base64 may be spelled differently).
func FuzzAssertionVerify(f *testing.F) {
	p := newPKI(f, "orchestrator", "payment", "inventory")
	v := p.verifier("payment")
	orch := p.sources["orchestrator"]

	signed := map[string]bool{}
	add := func(raw string) {
		signed[signedContent(raw)] = true
		f.Add(raw)
	}
	add(sign(f, p.signer("orchestrator"), "payment", "alice", []string{"orders.place"}))
	add(sign(f, p.signer("orchestrator"), "payment", "alice", []string{}))
	// Refused ones, as starting points.
	f.Add(sign(f, p.signer("orchestrator"), "inventory", "alice", []string{"orders.place"}))
	f.Add(sign(f, p.signer("inventory"), "payment", "alice", []string{"orders.place"}))
	f.Add(signES256(f, keyOf(f, orch), map[string]any{"alg": "ES256", "x5c": x5c(orch)}, func() map[string]any {
		c := assertionClaims("orchestrator", "payment")
		c["exp"] = time.Now().Add(time.Hour).Unix()
		return c
	}()))
	f.Add(b64.EncodeToString([]byte(`{"alg":"none","x5c":["`+x5c(orch)[0]+`"]}`)) + "." + segment(f, assertionClaims("orchestrator", "payment")) + ".")
	f.Add(mint(f, newIssuer(f, "k"), "alice", nil, time.Hour))
	f.Add("")
	f.Add("a.b.c")
	f.Add(b64.EncodeToString([]byte(`{"alg":"ES256","x5c":["AAAA"]}`)) + ".e30.AAAA")
	f.Add(b64.EncodeToString([]byte(`{"alg":"ES256","x5c":[]}`)) + ".e30.AAAA")

	f.Fuzz(func(t *testing.T, raw string) {
		a, err := v.Verify(raw, "orchestrator")
		if err != nil {
			require.Zero(t, a)
			return
		}
		require.True(t, signed[signedContent(raw)], "verified an assertion the orchestrator never signed: %q", raw)
		require.Equal(t, "alice", a.User)
	})
}
