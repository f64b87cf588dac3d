package token_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/token"
)

// fixedCerts is a signing identity whose key is of any type mtls.CA does
// not issue: its certificate is signed by the test CA all the same.
type fixedCerts struct {
	tc   *tls.Certificate
	leaf *x509.Certificate
}

func (f fixedCerts) Certificate() (*tls.Certificate, *x509.Certificate) { return f.tc, f.leaf }

// keyedIdentity is a certificate of p's CA for service with key's public
// key.
func keyedIdentity(t testing.TB, p *pki, service string, key crypto.Signer) fixedCerts {
	t.Helper()
	is, err := p.ca.Issue(service, nil, time.Hour)
	require.NoError(t, err)
	tmpl := parseCertPEM(t, is.CertPEM)
	kp, err := p.ca.KeyPEM()
	require.NoError(t, err)
	b, _ := pem.Decode(kp)
	caKey, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	require.NoError(t, err)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca.Cert, key.Public(), caKey)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return fixedCerts{tc: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf: leaf}
}

// Assertions signed the way jwx signed them verify with the verifier that
// replaced it, and the other way round, for every key type a certificate
// may have: services of either version call each other during a rollout.
func TestAssertionInteroperatesWithJWX(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment")
	newKey := map[string]func() (crypto.Signer, error){
		"P-256": func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) },
		"P-384": func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P384(), rand.Reader) },
		"P-521": func() (crypto.Signer, error) { return ecdsa.GenerateKey(elliptic.P521(), rand.Reader) },
		"RSA":   func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, 2048) },
		"Ed25519": func() (crypto.Signer, error) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		},
	}
	for name, gen := range newKey {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			key, err := gen()
			require.NoError(t, err)
			s := token.NewSigner(keyedIdentity(t, p, "orchestrator", key), "orchestrator", mtls.ID)
			v := p.verifier("payment")
			old := token.NewJWXAssertionVerifier(p.verifier("payment"))

			byJWX, err := token.JWXSign(s, "payment", "alice", []string{"orders.place", "payments.charge"})
			require.NoError(t, err)
			byHand := sign(t, s, "payment", "alice", []string{"orders.place", "payments.charge"})
			for _, raw := range []string{byJWX, byHand} {
				for _, verify := range []func(string, string) (token.Assertion, error){v.Verify, old.Verify} {
					a, err := verify(raw, "orchestrator")
					require.NoError(t, err)
					require.Equal(t, "alice", a.User)
					require.Equal(t, []string{"orders.place", "payments.charge"}, a.Permissions)
				}
			}
			// The same header: the new one is jwx's, byte for byte.
			require.Equal(t, strings.Split(byJWX, ".")[0], strings.Split(byHand, ".")[0])

			// And each refuses the other's assertions for another peer.
			_, err = v.Verify(byJWX, "payment")
			require.ErrorContains(t, err, "not by the calling payment")
			_, err = old.Verify(byHand, "payment")
			require.ErrorContains(t, err, "not by the calling payment")
		})
	}
}

// signRaw signs, with an ECDSA key (by ES256 whatever its curve), a header and claims given as JSON text,
// so that a test can write what encoding/json never would (a member twice).
func signRaw(t testing.TB, key *ecdsa.PrivateKey, header, claims string) string {
	t.Helper()
	input := b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(claims))
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	require.NoError(t, err)
	n := (key.Curve.Params().BitSize + 7) / 8
	sig := make([]byte, 2*n)
	r.FillBytes(sig[:n])
	s.FillBytes(sig[n:])
	return input + "." + b64.EncodeToString(sig)
}

// The hand-written parser and checks refuse what jwx refused, and what it
// should have.
func TestAssertionRefusedByTheHandParser(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment")
	v := p.verifier("payment")
	orch := p.sources["orchestrator"]
	key := keyOf(t, orch)
	chain := `"x5c":["` + x5c(orch)[0] + `"]`
	claims := segmentJSON(t, assertionClaims("orchestrator", "payment"))
	valid := sign(t, p.signer("orchestrator"), "payment", "alice", []string{"orders.place"})
	parts := strings.Split(valid, ".")
	flip := func(s string, i int) string { // another base64url letter at i
		c := byte('A')
		if s[i] == 'A' {
			c = 'B'
		}
		return s[:i] + string(c) + s[i+1:]
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	require.NoError(t, err)

	tests := []struct {
		name, raw, want string
	}{
		{"tampered header", b64.EncodeToString([]byte(`{"alg":"ES256","typ":"JWS",`+chain+`}`)) + "." + parts[1] + "." + parts[2], "signature"},
		{"tampered payload", parts[0] + "." + flip(parts[1], 10) + "." + parts[2], "signature"},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flip(parts[2], 5), "signature"},
		{"signature one byte short", parts[0] + "." + parts[1] + "." + b64.EncodeToString(mustB64(t, parts[2])[:63]), "signature"},
		{"signature with padding", valid + "=", "malformed"},
		{"signature in standard base64", parts[0] + "." + parts[1] + "." + strings.NewReplacer("-", "+", "_", "/").Replace(parts[2]) + "+/", "malformed"},
		{"a newline in the payload", parts[0] + "." + parts[1][:8] + "\n" + parts[1][8:] + "." + parts[2], "malformed"},
		{"a space before", " " + valid, "malformed"},
		{"four segments", valid + ".AAAA", "malformed"},
		{"no signature", parts[0] + "." + parts[1] + ".", "malformed"},
		{"alg ES384 for a P-256 key", signRaw(t, key, `{"alg":"ES384",`+chain+`}`, claims), "signature"},
		{"alg RS256 for a P-256 key", signRaw(t, key, `{"alg":"RS256",`+chain+`}`, claims), "signature"},
		{"alg none, signed all the same", signRaw(t, key, `{"alg":"none",`+chain+`}`, claims), "signature"},
		{"alg absent", signRaw(t, key, `{`+chain+`}`, claims), "malformed"},
		{"alg not a string", signRaw(t, key, `{"alg":["ES256"],`+chain+`}`, claims), "malformed"},
		{"alg twice", signRaw(t, key, `{"alg":"ES256","alg":"none",`+chain+`}`, claims), "malformed"},
		{"alg twice, the same", signRaw(t, key, `{"alg":"ES256","alg":"ES256",`+chain+`}`, claims), "malformed"},
		{"x5c twice", signRaw(t, key, `{"alg":"ES256",`+chain+`,`+chain+`}`, claims), "malformed"},
		{"alg in capitals only", signRaw(t, key, `{"ALG":"ES256",`+chain+`}`, claims), "malformed"},
		{"crit", signRaw(t, key, `{"alg":"ES256","crit":["exp"],"exp":1,`+chain+`}`, claims), "malformed"},
		{"header an array", signRaw(t, key, `[{"alg":"ES256",`+chain+`}]`, claims), "malformed"},
		{"data after the header", signRaw(t, key, `{"alg":"ES256",`+chain+`}{}`, claims), "malformed"},
		{"header not JSON", signRaw(t, key, `{"alg":"ES256",`+chain, claims), "malformed"},
		{"x5c of another key", signRaw(t, p384, `{"alg":"ES256",`+chain+`}`, claims), "signature"},
		{"claims not JSON", signRaw(t, key, `{"alg":"ES256",`+chain+`}`, `{"sub":`), "malformed"},
		{"a claim twice", signRaw(t, key, `{"alg":"ES256",`+chain+`}`, strings.Replace(claims, `"sub":"alice"`, `"sub":"alice","sub":"bob"`, 1)), "malformed"},
		{"claims in capitals", signRaw(t, key, `{"alg":"ES256",`+chain+`}`, strings.Replace(claims, `"sub":`, `"SUB":`, 1)), "claims not valid"},
		{"audience another service", signRaw(t, key, `{"alg":"ES256",`+chain+`}`, strings.Replace(claims, mtls.ID("payment"), mtls.ID("inventory"), 1)), "wrong audience"},
		{"audience a list of numbers", signRaw(t, key, `{"alg":"ES256",`+chain+`}`, strings.Replace(claims, `["`+mtls.ID("payment")+`"]`, `[1]`, 1)), "malformed"},
		{"issuer another service", signRaw(t, key, `{"alg":"ES256",`+chain+`}`, strings.Replace(claims, mtls.ID("orchestrator"), mtls.ID("inventory"), 1)), "wrong issuer"},
		{"permissions null", signRaw(t, key, `{"alg":"ES256",`+chain+`}`, strings.Replace(claims, `["orders.place"]`, `null`, 1)), "no permissions claim"},
		{"exp not a number", signRaw(t, key, `{"alg":"ES256",`+chain+`}`, strings.Replace(claims, `"exp":`, `"exp":"soon","x":`, 1)), "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := v.Verify(tt.raw, "orchestrator")
			require.Error(t, err)
			require.Zero(t, a)
			require.ErrorContains(t, err, tt.want)
		})
	}

	// The same construction with nothing changed verifies, and so does an
	// audience given as a string (RFC 7519 §4.1.3) or a fractional date.
	for _, c := range []string{
		claims,
		strings.Replace(claims, `["`+mtls.ID("payment")+`"]`, `"`+mtls.ID("payment")+`"`, 1),
		strings.Replace(claims, `["`+mtls.ID("payment")+`"]`, `["elsewhere","`+mtls.ID("payment")+`"]`, 1),
	} {
		a, err := v.Verify(signRaw(t, key, `{"alg":"ES256",`+chain+`}`, c), "orchestrator")
		require.NoError(t, err, c)
		require.Equal(t, "alice", a.User)
	}
}

// segmentJSON is claims as the JSON text of an assertion's payload.
func segmentJSON(t testing.TB, claims map[string]any) string {
	t.Helper()
	b, err := b64.DecodeString(segment(t, claims))
	require.NoError(t, err)
	return string(b)
}

func mustB64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := b64.DecodeString(s)
	require.NoError(t, err)
	return b
}

// A verified header is remembered, but what the assertion says is checked
// every time: a remembered header does not make an expired assertion good,
// nor a bad signature good.
func TestAssertionKnownHeaderStillChecksClaims(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment")
	v := p.verifier("payment")
	now := time.Now()
	clock := func() time.Time { return now }
	v.SetClock(clock)
	raw := sign(t, p.signer("orchestrator"), "payment", "alice", []string{"orders.place"})
	_, err := v.Verify(raw, "orchestrator")
	require.NoError(t, err)
	require.Equal(t, 1, v.KnownHeaders())

	now = now.Add(token.AssertionTTL + 6*time.Second) // past exp and the skew; the header is still known
	_, err = v.Verify(raw, "orchestrator")
	require.ErrorIs(t, err, token.ErrExpired)

	// An assertion signed now, with the same header, verifies from the
	// known header; one signed with a bad signature does not.
	s := p.signer("orchestrator")
	s.SetClock(clock)
	fresh := sign(t, s, "payment", "alice", nil)
	require.Equal(t, strings.Split(raw, ".")[0], strings.Split(fresh, ".")[0])
	_, err = v.Verify(fresh, "orchestrator")
	require.NoError(t, err)
	parts := strings.Split(fresh, ".")
	_, err = v.Verify(parts[0]+"."+parts[1]+"."+strings.Split(raw, ".")[2], "orchestrator")
	require.ErrorIs(t, err, token.ErrSignature)
}

// Only a header whose key verified a signature is remembered: a stranger
// sending a trusted chain (which is public) with signatures it cannot make
// does not fill the cache.
func TestAssertionUnsignedHeaderNotRemembered(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment", "inventory")
	v := p.verifier("payment")
	orch := p.sources["orchestrator"]
	for i := range 5 {
		hdr := map[string]any{"alg": "ES256", "x5c": x5c(orch), "n": i}
		_, err := v.Verify(signES256(t, keyOf(t, p.sources["inventory"]), hdr, assertionClaims("orchestrator", "payment")), "orchestrator")
		require.ErrorIs(t, err, token.ErrSignature)
	}
	require.Zero(t, v.KnownHeaders())
}

func TestSignerHeaderFollowsRotation(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment")
	certs := &rotating{}
	certs.set(p.sources["orchestrator"])
	s := token.NewSigner(certs, "orchestrator", mtls.ID)
	v := p.verifier("payment")
	before := sign(t, s, "payment", "alice", nil)
	certs.set(loadIdentity(t, p.ca, "orchestrator", nil))
	after := sign(t, s, "payment", "alice", nil)
	require.NotEqual(t, strings.Split(before, ".")[0], strings.Split(after, ".")[0], "the header names the new certificate")
	for _, raw := range []string{before, after} {
		_, err := v.Verify(raw, "orchestrator")
		require.NoError(t, err)
	}
	tc, _ := certs.Certificate()
	hdr := mustB64(t, strings.Split(after, ".")[0])
	require.Contains(t, string(hdr), x5c(certs.src)[0])
	require.NotNil(t, tc)
}

// rotating is a Certificates whose identity a test swaps.
type rotating struct {
	mu  sync.Mutex
	src *mtls.Source
}

func (r *rotating) set(src *mtls.Source) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.src = src
}

func (r *rotating) Certificate() (*tls.Certificate, *x509.Certificate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.src.Certificate()
}
