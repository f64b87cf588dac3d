package token_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/token"
)

// reasons are the sentinels every Verify error must wrap.
var reasons = []error{token.ErrMalformed, token.ErrExpired, token.ErrSignature, token.ErrIssuer, token.ErrAudience, token.ErrClaims}

func requireReason(t testing.TB, err error) {
	t.Helper()
	require.Error(t, err)
	for _, r := range reasons {
		if errors.Is(err, r) {
			return
		}
	}
	require.Failf(t, "error wraps no reason", "%v", err)
}

func TestVerifyValidToken(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, "k1")
	v, _ := fileVerifier(t, iss)

	c, err := v.Verify(t.Context(), mint(t, iss, "alice", nil, time.Hour))
	require.NoError(t, err)
	require.Equal(t, "alice", c.Subject)
	require.Empty(t, c.Roles)
	require.WithinDuration(t, time.Now().Add(time.Hour), c.Expires, 5*time.Second)
}

func TestVerifyRoles(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, "k1")
	v, _ := fileVerifier(t, iss)
	key := issuerKey(t, iss)
	hdr := map[string]any{"alg": "ES256", "typ": "JWT", "kid": "k1"}

	with := func(extra map[string]any) string {
		c := userClaims("bob")
		for k, val := range extra {
			c[k] = val
		}
		return signES256(t, key, hdr, c)
	}
	tests := []struct {
		name string
		raw  string
		want []string
	}{
		{"roles list from Mint", mint(t, iss, "bob", []string{"admin", "operator"}, time.Hour), []string{"admin", "operator"}},
		{"unknown roles dropped", mint(t, iss, "bob", []string{"superuser", "operator", "root"}, time.Hour), []string{"operator"}},
		{"duplicates dropped", mint(t, iss, "bob", []string{"admin", "admin"}, time.Hour), []string{"admin"}},
		{"roles are case-sensitive", mint(t, iss, "bob", []string{"Admin", "OPERATOR"}, time.Hour), nil},
		{"scope string", with(map[string]any{"scope": "openid admin profile"}), []string{"admin"}},
		{"scope with operator and admin", with(map[string]any{"scope": "  operator\tadmin  "}), []string{"operator", "admin"}},
		{"roles and scope merged", with(map[string]any{"roles": []any{"operator"}, "scope": "operator admin"}), []string{"operator", "admin"}},
		{"non-string roles ignored", with(map[string]any{"roles": []any{1, true, "admin", nil}}), []string{"admin"}},
		{"roles as a string grants nothing", with(map[string]any{"roles": "admin"}), nil},
		{"scope as a list grants nothing", with(map[string]any{"scope": []any{"admin"}}), nil},
		{"no roles", with(nil), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(t.Context(), tt.raw)
			require.NoError(t, err)
			require.Equal(t, "bob", c.Subject)
			require.Equal(t, tt.want, c.Roles)
		})
	}
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, "k1")
	v, jwksFile := fileVerifier(t, iss)
	key := issuerKey(t, iss)
	hdr := map[string]any{"alg": "ES256", "typ": "JWT", "kid": "k1"}

	sameKID := newIssuer(t, "k1") // another key under the same key id
	otherKID := newIssuer(t, "k2")
	wrongName := *iss
	wrongName.Name = "https://evil.test"

	wrongAud, err := iss.MintFor("another-api", "alice", nil, time.Hour)
	require.NoError(t, err)

	claims := func(edit func(map[string]any)) map[string]any {
		c := userClaims("alice")
		edit(c)
		return c
	}
	valid := mint(t, iss, "alice", nil, time.Hour)
	parts := strings.Split(valid, ".")
	tamperedPayload := parts[0] + "." + segment(t, claims(func(c map[string]any) { c["roles"] = []string{"admin"} })) + "." + parts[2]

	pubJWKS := jwks(t, iss)
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	require.NoError(t, json.Unmarshal(pubJWKS, &set))
	x, _ := set.Keys[0]["x"].(string)
	require.NotEmpty(t, x)

	tests := []struct {
		name string
		raw  string
		want error // nil: refused for any reason
	}{
		{"expired", mint(t, iss, "alice", nil, -5*time.Minute), token.ErrExpired},
		{"wrong audience", wrongAud, token.ErrAudience},
		{"wrong issuer name", mint(t, &wrongName, "alice", nil, time.Hour), token.ErrIssuer},
		{"another key with the same kid", mint(t, sameKID, "alice", nil, time.Hour), token.ErrSignature},
		{"a key not in the set", mint(t, otherKID, "alice", nil, time.Hour), nil},
		{"tampered payload", tamperedPayload, token.ErrSignature},
		{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(mint(t, iss, "bob", nil, time.Hour), ".")[2], token.ErrSignature},
		{"no signature", parts[0] + "." + parts[1] + ".", nil},
		{"not yet valid", signES256(t, key, hdr, claims(func(c map[string]any) { c["nbf"] = time.Now().Add(time.Hour).Unix() })), token.ErrClaims},
		{"no expiry", signES256(t, key, hdr, claims(func(c map[string]any) { delete(c, "exp") })), token.ErrClaims},
		{"no subject", signES256(t, key, hdr, claims(func(c map[string]any) { delete(c, "sub") })), token.ErrClaims},
		{"no issuer", signES256(t, key, hdr, claims(func(c map[string]any) { delete(c, "iss") })), nil},
		{"no audience", signES256(t, key, hdr, claims(func(c map[string]any) { delete(c, "aud") })), nil},
		{"subject with a space", signES256(t, key, hdr, claims(func(c map[string]any) { c["sub"] = "alice smith" })), token.ErrClaims},
		{"subject with a newline", signES256(t, key, hdr, claims(func(c map[string]any) { c["sub"] = "alice\nadmin" })), token.ErrClaims},
		{"subject not ASCII", signES256(t, key, hdr, claims(func(c map[string]any) { c["sub"] = "alicé" })), token.ErrClaims},
		{"subject too long", signES256(t, key, hdr, claims(func(c map[string]any) { c["sub"] = strings.Repeat("a", 129) })), token.ErrClaims},
		{"alg none", b64.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"k1"}`)) + "." + segment(t, userClaims("alice")) + ".", nil},
		{"alg none without kid", b64.EncodeToString([]byte(`{"alg":"none"}`)) + "." + segment(t, userClaims("alice")) + ".", nil},
		{"HS256 with the public JWKS as secret", signHS256(t, pubJWKS, map[string]any{"alg": "HS256", "kid": "k1"}, userClaims("alice")), nil},
		{"HS256 with the public x coordinate as secret", signHS256(t, []byte(x), map[string]any{"alg": "HS256", "kid": "k1"}, userClaims("alice")), nil},
		{"HS256 with a guessable secret", signHS256(t, []byte("secret"), map[string]any{"alg": "HS256", "kid": "k1"}, userClaims("alice")), nil},
		{"empty", "", token.ErrMalformed},
		{"garbage", "not a token", token.ErrMalformed},
		{"three garbage segments", "a.b.c", nil},
		{"four segments", valid + ".x", token.ErrMalformed},
		{"JWE-like five segments", "a.b.c.d.e", token.ErrMalformed},
		{"oversized", valid + strings.Repeat("A", token.MaxLength), token.ErrMalformed},
		{"header not JSON", b64.EncodeToString([]byte("{")) + "." + parts[1] + "." + parts[2], nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := v.Verify(t.Context(), tt.raw)
			require.Error(t, err)
			require.Zero(t, c)
			requireReason(t, err)
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
			}
			require.NotContains(t, err.Error(), jwksFile)
		})
	}

	// The hand-built tokens are refused for what they change, not for how
	// they were built: unchanged claims signed the same way verify.
	c, err := v.Verify(t.Context(), signES256(t, key, hdr, userClaims("alice")))
	require.NoError(t, err)
	require.Equal(t, "alice", c.Subject)
}

func TestVerifyLeeway(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, "k1")
	name := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, name, jwks(t, iss))
	justExpired := mint(t, iss, "alice", nil, -10*time.Second)

	lenient, err := token.NewVerifier(t.Context(), token.Config{Issuer: issuerName, Audience: audience, JWKSFile: name})
	require.NoError(t, err)
	c, err := lenient.Verify(t.Context(), justExpired)
	require.NoError(t, err, "the default leeway of 30s tolerates 10s of skew")
	require.Equal(t, "alice", c.Subject)

	strict, err := token.NewVerifier(t.Context(), token.Config{Issuer: issuerName, Audience: audience, JWKSFile: name, Leeway: time.Millisecond})
	require.NoError(t, err)
	_, err = strict.Verify(t.Context(), justExpired)
	require.ErrorIs(t, err, token.ErrExpired)
}

func TestNewVerifierConfig(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, "k1")
	name := filepath.Join(t.TempDir(), "jwks.json")
	writeJWKS(t, name, jwks(t, iss))
	tests := []struct {
		name string
		cfg  token.Config
		want string
	}{
		{"no issuer", token.Config{Audience: audience, JWKSFile: name}, "issuer and audience are required"},
		{"no audience", token.Config{Issuer: issuerName, JWKSFile: name}, "issuer and audience are required"},
		{"no keys", token.Config{Issuer: issuerName, Audience: audience}, "exactly one of"},
		{"file and URL", token.Config{Issuer: issuerName, Audience: audience, JWKSFile: name, JWKSURL: "https://idp.test/jwks"}, "exactly one of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := token.NewVerifier(t.Context(), tt.cfg)
			require.ErrorContains(t, err, tt.want)
			require.Nil(t, v)
		})
	}
}

func TestNewVerifierRefusesKeyFile(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, "k1")
	private, err := iss.PrivateJWK()
	require.NoError(t, err)
	var set map[string][]any
	require.NoError(t, json.Unmarshal(jwks(t, iss), &set))
	set["keys"] = append(set["keys"], map[string]any{"kty": "oct", "k": "c2VjcmV0"})
	b, err := json.Marshal(set)
	require.NoError(t, err)
	mixed := string(b)
	tests := []struct {
		name    string
		content string // "" for no file
		want    string
	}{
		{"missing file", "", "no such file"},
		{"not JSON", "{", "JWKS file"},
		{"empty set", `{"keys":[]}`, "no keys"},
		{"symmetric key", `{"keys":[{"kty":"oct","kid":"k1","alg":"HS256","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}`, "type oct"},
		{"private key", `{"keys":[` + string(private) + `]}`, "private key"},
		{"a public and a symmetric key", mixed, "key 1 has type oct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "jwks.json")
			if tt.content != "" {
				writeJWKS(t, name, []byte(tt.content))
			}
			v, err := token.NewVerifier(t.Context(), token.Config{Issuer: issuerName, Audience: audience, JWKSFile: name})
			require.ErrorContains(t, err, tt.want)
			require.ErrorContains(t, err, name, "the error names the file")
			require.Nil(t, v)
		})
	}
}

func TestVerifierRereadsRotatedKeyFile(t *testing.T) {
	t.Parallel()
	old := newIssuer(t, "2026-01")
	v, name := fileVerifier(t, old)
	oldToken := mint(t, old, "alice", nil, time.Hour)

	rotated := newIssuer(t, "2026-02")
	newToken := mint(t, rotated, "alice", nil, time.Hour)
	_, err := v.Verify(t.Context(), newToken)
	require.Error(t, err, "the new key is not trusted yet")

	writeJWKS(t, name, jwks(t, rotated))
	require.Eventually(t, func() bool {
		c, err := v.Verify(t.Context(), newToken)
		return err == nil && c.Subject == "alice"
	}, 5*time.Second, 20*time.Millisecond, "the rotated key is trusted within the deadline")

	_, err = v.Verify(t.Context(), oldToken)
	require.ErrorIs(t, err, token.ErrSignature, "the removed key is no longer trusted")
}

func TestVerifierKeepsKeysWhenFileBreaks(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, "k1")
	private, err := iss.PrivateJWK()
	require.NoError(t, err)

	for name, content := range map[string]string{
		"garbage":       "{not json",
		"empty set":     `{"keys":[]}`,
		"symmetric key": `{"keys":[{"kty":"oct","kid":"k1","k":"c2VjcmV0"}]}`,
		"private key":   `{"keys":[` + string(private) + `]}`,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			v, file := fileVerifier(t, iss)
			raw := mint(t, iss, "alice", nil, time.Hour)
			writeJWKS(t, file, []byte(content))
			// The file is re-read at least twice in this window (once a
			// second); the last good key set stays in use throughout.
			require.Never(t, func() bool {
				_, err := v.Verify(t.Context(), raw)
				return err != nil
			}, 2500*time.Millisecond, 50*time.Millisecond)

			// And a good file written after is picked up.
			rotated := newIssuer(t, "k2")
			writeJWKS(t, file, jwks(t, rotated))
			fresh := mint(t, rotated, "alice", nil, time.Hour)
			require.Eventually(t, func() bool {
				_, err := v.Verify(t.Context(), fresh)
				return err == nil
			}, 5*time.Second, 20*time.Millisecond)
		})
	}
}

func TestVerifierConcurrentWithRotation(t *testing.T) {
	t.Parallel()
	a, b := newIssuer(t, "a"), newIssuer(t, "b")
	v, file := fileVerifier(t, a)
	tokA := mint(t, a, "alice", nil, time.Hour)
	tokB := mint(t, b, "bob", nil, time.Hour)

	var wg sync.WaitGroup
	var sawB atomic.Bool
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if c, err := v.Verify(ctx, tokB); err == nil {
					if c.Subject != "bob" {
						panic("wrong subject " + c.Subject)
					}
					sawB.Store(true)
				}
				_, _ = v.Verify(ctx, tokA)
			}
		})
	}
	writeJWKS(t, file, jwks(t, b))
	require.Eventually(t, sawB.Load, 5*time.Second, 10*time.Millisecond)
	cancel()
	wg.Wait()
}

func TestVerifierJWKSURL(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, "k1")
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			http.NotFound(w, r)
			return
		}
		fetches.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks(t, iss))
	}))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	v, err := token.NewVerifier(ctx, token.Config{Issuer: issuerName, Audience: audience, JWKSURL: srv.URL + "/.well-known/jwks.json"})
	require.NoError(t, err)
	t.Cleanup(func() { v.Close(context.Background()) })
	require.GreaterOrEqual(t, fetches.Load(), int32(1))

	c, err := v.Verify(t.Context(), mint(t, iss, "alice", []string{"operator"}, time.Hour))
	require.NoError(t, err)
	require.Equal(t, "alice", c.Subject)
	require.Equal(t, []string{"operator"}, c.Roles)

	_, err = v.Verify(t.Context(), mint(t, newIssuer(t, "k1"), "alice", nil, time.Hour))
	require.ErrorIs(t, err, token.ErrSignature)
	_, err = v.Verify(t.Context(), mint(t, iss, "alice", nil, -time.Hour))
	require.ErrorIs(t, err, token.ErrExpired)
}

func TestVerifierJWKSURLRefused(t *testing.T) {
	t.Parallel()
	iss := newIssuer(t, "k1")
	private, err := iss.PrivateJWK()
	require.NoError(t, err)
	serve := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(jwks(t, iss))
	}))
	t.Cleanup(tlsSrv.Close)

	// Key sets that are fetched but unfit are refused at once.
	for _, tt := range []struct{ name, url string }{
		{"symmetric key", serve(http.StatusOK, `{"keys":[{"kty":"oct","kid":"k1","k":"c2VjcmV0"}]}`)},
		{"private key", serve(http.StatusOK, `{"keys":[`+string(private)+`]}`)},
		{"empty set", serve(http.StatusOK, `{"keys":[]}`)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			v, err := token.NewVerifier(ctx, token.Config{Issuer: issuerName, Audience: audience, JWKSURL: tt.url})
			require.Error(t, err)
			require.Nil(t, v)
			require.ErrorContains(t, err, tt.url)
			require.NoError(t, ctx.Err(), "refused before the deadline")
		})
	}
	// Key sets that cannot be fetched are waited for until ctx ends (see
	// TestNewVerifierFailsPromptlyWhenJWKSURLFails).
	for _, tt := range []struct{ name, url string }{
		{"not JSON", serve(http.StatusOK, `<html>`)},
		{"server error", serve(http.StatusInternalServerError, `oops`)},
		{"server certificate not trusted", tlsSrv.URL},
		{"nobody listening", "http://127.0.0.1:1/jwks"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			v, err := token.NewVerifier(ctx, token.Config{Issuer: issuerName, Audience: audience, JWKSURL: tt.url})
			require.Error(t, err)
			require.Nil(t, v)
			require.ErrorContains(t, err, tt.url)
		})
	}
}

// NewVerifier "fetches the key set once and fails when it cannot": a
// service whose identity provider is down fails at start with the reason,
// instead of hanging until its signal context ends.
func TestNewVerifierFailsPromptlyWhenJWKSURLFails(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "unavailable", http.StatusInternalServerError)
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	start := time.Now()
	v, err := token.NewVerifier(ctx, token.Config{Issuer: issuerName, Audience: audience, JWKSURL: srv.URL})
	require.Error(t, err)
	require.Nil(t, v)
	require.Less(t, time.Since(start), 5*time.Second, "one failed fetch fails NewVerifier")
	require.NoError(t, ctx.Err())
}
