package token_test

import (
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/token"
)

const (
	issuerName = "https://idp.goodgo.test"
	audience   = "goodgo-api"
)

var b64 = base64.RawURLEncoding

func newIssuer(t testing.TB, kid string) *token.Issuer {
	t.Helper()
	iss, err := token.NewIssuer(issuerName, audience, kid)
	require.NoError(t, err)
	return iss
}

func jwks(t testing.TB, iss *token.Issuer) []byte {
	t.Helper()
	b, err := iss.PublicJWKS()
	require.NoError(t, err)
	return b
}

// writeJWKS writes b to name through a rename, as a Secret update does, so
// that the verifier never reads half a file.
func writeJWKS(t testing.TB, name string, b []byte) {
	t.Helper()
	tmp := name + ".tmp"
	require.NoError(t, os.WriteFile(tmp, b, 0o600))
	require.NoError(t, os.Rename(tmp, name))
}

// fileVerifier returns a verifier of iss's tokens reading its JWKS from a
// file, and the file's name.
func fileVerifier(t testing.TB, iss *token.Issuer) (*token.Verifier, string) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, name, jwks(t, iss))
	v, err := token.NewVerifier(t.Context(), token.Config{Issuer: issuerName, Audience: audience, JWKSFile: name})
	require.NoError(t, err)
	return v, name
}

func mint(t testing.TB, iss *token.Issuer, subject string, roles []string, ttl time.Duration) string {
	t.Helper()
	raw, err := iss.Mint(subject, roles, ttl)
	require.NoError(t, err)
	return raw
}

// issuerKey is the issuer's private key, to sign tokens Mint cannot make.
func issuerKey(t testing.TB, iss *token.Issuer) *ecdsa.PrivateKey {
	t.Helper()
	b, err := iss.PrivateJWK()
	require.NoError(t, err)
	k, err := jwk.ParseKey(b)
	require.NoError(t, err)
	var raw ecdsa.PrivateKey
	require.NoError(t, jwk.Export(k, &raw))
	return &raw
}

func segment(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b64.EncodeToString(b)
}

// signES256 builds a compact JWS of claims with header, signed with key
// (a P-256 key), by hand: nothing of the code under test is involved.
func signES256(t testing.TB, key *ecdsa.PrivateKey, header, claims map[string]any) string {
	t.Helper()
	input := segment(t, header) + "." + segment(t, claims)
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	require.NoError(t, err)
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return input + "." + b64.EncodeToString(sig)
}

func signHS256(t testing.TB, secret []byte, header, claims map[string]any) string {
	t.Helper()
	input := segment(t, header) + "." + segment(t, claims)
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(input))
	return input + "." + b64.EncodeToString(m.Sum(nil))
}

// userClaims are valid claims of a bearer token for subject.
func userClaims(subject string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": issuerName,
		"aud": []string{audience},
		"sub": subject,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
}
