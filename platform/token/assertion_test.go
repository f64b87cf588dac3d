package token_test

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/token"
)

// pki is a CA and the loaded identities of a few services.
type pki struct {
	ca      *mtls.CA
	sources map[string]*mtls.Source
}

func newPKI(t testing.TB, services ...string) *pki {
	t.Helper()
	ca, err := mtls.NewCA("assertion test CA", time.Hour)
	require.NoError(t, err)
	p := &pki{ca: ca, sources: map[string]*mtls.Source{}}
	for _, s := range services {
		p.sources[s] = loadIdentity(t, ca, s, nil)
	}
	return p
}

// loadIdentity issues a certificate for service (or uses issued), writes it
// with ca's bundle into a temporary directory and loads it.
func loadIdentity(t testing.TB, ca *mtls.CA, service string, issued *mtls.Issued) *mtls.Source {
	t.Helper()
	if issued == nil {
		is, err := ca.Issue(service, nil, time.Hour)
		require.NoError(t, err)
		issued = &is
	}
	dir := t.TempDir()
	f := mtls.Files{Cert: filepath.Join(dir, "tls.crt"), Key: filepath.Join(dir, "tls.key"), CA: filepath.Join(dir, "ca.crt")}
	require.NoError(t, mtls.WriteFileAtomic(f.CA, ca.PEM, 0o644))
	require.NoError(t, issued.WriteFiles(f.Cert, f.Key))
	src, err := mtls.Load(f, nil)
	require.NoError(t, err)
	return src
}

func (p *pki) signer(service string) *token.Signer {
	return token.NewSigner(p.sources[service], service, mtls.ID)
}

func (p *pki) verifier(service string) *token.AssertionVerifier {
	return token.NewAssertionVerifier(p.sources[service], service, mtls.ID)
}

func sign(t testing.TB, s *token.Signer, callee, user string, perms []string) string {
	t.Helper()
	raw, err := s.Sign(callee, user, perms)
	require.NoError(t, err)
	return raw
}

// x5c is src's certificate chain as an x5c header value.
func x5c(src *mtls.Source) []string {
	tc, _ := src.Certificate()
	var out []string
	for _, der := range tc.Certificate {
		out = append(out, base64.StdEncoding.EncodeToString(der))
	}
	return out
}

func keyOf(t testing.TB, src *mtls.Source) *ecdsa.PrivateKey {
	t.Helper()
	tc, _ := src.Certificate()
	k, ok := tc.PrivateKey.(*ecdsa.PrivateKey)
	require.True(t, ok)
	return k
}

// assertionClaims are what Signer.Sign puts in an assertion from service
// to callee for alice.
func assertionClaims(from, to string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss":  mtls.ID(from),
		"aud":  []string{mtls.ID(to)},
		"sub":  "alice",
		"iat":  now.Unix(),
		"exp":  now.Add(token.AssertionTTL).Unix(),
		"perm": []string{"orders.place"},
	}
}

func TestAssertionRoundTrip(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment")
	raw := sign(t, p.signer("orchestrator"), "payment", "alice", []string{"orders.place", "payments.charge", "orders.place"})

	v := p.verifier("payment")
	for range 2 { // the second time from the verified-chain cache
		a, err := v.Verify(raw, "orchestrator")
		require.NoError(t, err)
		require.Equal(t, "alice", a.User)
		require.Equal(t, []string{"orders.place", "payments.charge"}, a.Permissions)
		require.WithinDuration(t, time.Now().Add(token.AssertionTTL), a.Expires, 5*time.Second)
	}

	a, err := v.Verify(sign(t, p.signer("orchestrator"), "payment", "bob", []string{}), "orchestrator")
	require.NoError(t, err, "an assertion granting nothing is valid")
	require.Equal(t, "bob", a.User)
	require.Empty(t, a.Permissions)
}

// Sign with nil permissions signs an empty permission list, which the
// verifier accepts (it once signed "perm":null, which it refused).
func TestAssertionWithNilPermissions(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment")
	a, err := p.verifier("payment").Verify(sign(t, p.signer("orchestrator"), "payment", "bob", nil), "orchestrator")
	require.NoError(t, err)
	require.Equal(t, "bob", a.User)
	require.Empty(t, a.Permissions)
}

func TestAssertionRefused(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment", "inventory")
	other, err := mtls.NewCA("other CA", time.Hour)
	require.NoError(t, err)
	// The stranger's certificate names the orchestrator, from another CA;
	// its Source trusts its own CA.
	stranger := loadIdentity(t, other, "orchestrator", nil)
	v := p.verifier("payment")
	orch := p.sources["orchestrator"]
	orchKey := keyOf(t, orch)
	hdr := func(src *mtls.Source) map[string]any {
		return map[string]any{"alg": "ES256", "typ": "JWT", "x5c": x5c(src)}
	}
	claims := func(edit func(map[string]any)) map[string]any {
		c := assertionClaims("orchestrator", "payment")
		if edit != nil {
			edit(c)
		}
		return c
	}

	// A certificate of our CA for the orchestrator without client-auth
	// usage: it may serve, not call.
	serverOnly := customIdentity(t, p.ca, "orchestrator", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth})

	valid := sign(t, p.signer("orchestrator"), "payment", "alice", []string{"orders.place"})
	parts := strings.Split(valid, ".")

	tests := []struct {
		name string
		raw  string
		peer string
		want string
	}{
		{"another TLS peer", valid, "inventory", "signed by orchestrator, not by the calling inventory"},
		{"for another callee", sign(t, p.signer("orchestrator"), "inventory", "alice", []string{"orders.place"}), "orchestrator", "wrong audience"},
		{"signed by another CA's certificate", sign(t, token.NewSigner(stranger, "orchestrator", mtls.ID), "payment", "alice", nil), "orchestrator", "signer certificate not trusted"},
		{"signed by the inventory for an orchestrator peer", sign(t, p.signer("inventory"), "payment", "alice", nil), "orchestrator", "signed by inventory, not by the calling orchestrator"},
		{"tampered payload", parts[0] + "." + segment(t, claims(func(c map[string]any) { c["sub"] = "mallory" })) + "." + parts[2], "orchestrator", "signature"},
		{"tampered permissions", parts[0] + "." + segment(t, claims(func(c map[string]any) { c["perm"] = []string{"orders.place", "admin"} })) + "." + parts[2], "orchestrator", "signature"},
		{"x5c swapped for the inventory's", signES256(t, orchKey, hdr(p.sources["inventory"]), claims(nil)), "inventory", "signature"},
		{"orchestrator's x5c, inventory's key", signES256(t, keyOf(t, p.sources["inventory"]), hdr(orch), claims(nil)), "orchestrator", "signature"},
		{"issuer names another service", signES256(t, orchKey, hdr(orch), claims(func(c map[string]any) { c["iss"] = mtls.ID("inventory") })), "orchestrator", "wrong issuer"},
		{"expired", signES256(t, orchKey, hdr(orch), claims(func(c map[string]any) {
			c["iat"] = time.Now().Add(-2 * time.Minute).Unix()
			c["exp"] = time.Now().Add(-time.Minute).Unix()
		})), "orchestrator", "expired"},
		{"lifetime longer than the TTL", signES256(t, orchKey, hdr(orch), claims(func(c map[string]any) {
			c["exp"] = time.Now().Add(10 * time.Minute).Unix()
		})), "orchestrator", "lifetime longer than allowed"},
		{"no issued-at", signES256(t, orchKey, hdr(orch), claims(func(c map[string]any) { delete(c, "iat") })), "orchestrator", "lifetime longer than allowed"},
		{"no expiry", signES256(t, orchKey, hdr(orch), claims(func(c map[string]any) { delete(c, "exp") })), "orchestrator", "claims not valid"},
		{"no subject", signES256(t, orchKey, hdr(orch), claims(func(c map[string]any) { delete(c, "sub") })), "orchestrator", "claims not valid"},
		{"subject not a user id", signES256(t, orchKey, hdr(orch), claims(func(c map[string]any) { c["sub"] = "alice bob" })), "orchestrator", "subject is not a valid user id"},
		{"no permissions claim", signES256(t, orchKey, hdr(orch), claims(func(c map[string]any) { delete(c, "perm") })), "orchestrator", "no permissions claim"},
		{"permissions not a list", signES256(t, orchKey, hdr(orch), claims(func(c map[string]any) { c["perm"] = "orders.place" })), "orchestrator", "no permissions claim"},
		{"no x5c", signES256(t, orchKey, map[string]any{"alg": "ES256"}, claims(nil)), "orchestrator", "no certificate chain (x5c)"},
		{"x5c not a certificate", signES256(t, orchKey, map[string]any{"alg": "ES256", "x5c": []string{"aGVsbG8="}}, claims(nil)), "orchestrator", ""},
		{"server-only certificate", signES256(t, keyOf(t, serverOnly), hdr(serverOnly), claims(nil)), "orchestrator", "signer certificate not trusted"},
		{"alg none", b64.EncodeToString([]byte(`{"alg":"none","x5c":["`+x5c(orch)[0]+`"]}`)) + "." + segment(t, claims(nil)) + ".", "orchestrator", ""},
		{"HS256 keyed with the certificate", signHS256(t, []byte(x5c(orch)[0]), map[string]any{"alg": "HS256", "x5c": x5c(orch)}, claims(nil)), "orchestrator", ""},
		{"a bearer token", mint(t, newIssuer(t, "k1"), "alice", nil, time.Hour), "orchestrator", "no certificate chain (x5c)"},
		{"empty", "", "orchestrator", "malformed"},
		{"garbage", "x.y.z", "orchestrator", "malformed"},
		{"oversized", valid + strings.Repeat("A", token.MaxLength), "orchestrator", "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := v.Verify(tt.raw, tt.peer)
			require.Error(t, err)
			require.Zero(t, a)
			if tt.want != "" {
				require.ErrorContains(t, err, tt.want)
			}
			require.NotContains(t, err.Error(), parts[1], "the error never echoes the assertion")
		})
	}

	// The hand-built assertions are refused for what they change: the same
	// construction with nothing changed verifies.
	a, err := v.Verify(signES256(t, orchKey, hdr(orch), claims(nil)), "orchestrator")
	require.NoError(t, err)
	require.Equal(t, "alice", a.User)
	require.Equal(t, []string{"orders.place"}, a.Permissions)
}

// A chain verified once is cached, but the cached chain still has to name
// the calling peer.
func TestAssertionCacheStillChecksPeer(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment", "inventory")
	v := p.verifier("payment")
	raw := sign(t, p.signer("orchestrator"), "payment", "alice", []string{"orders.place"})
	_, err := v.Verify(raw, "orchestrator")
	require.NoError(t, err)
	_, err = v.Verify(raw, "inventory")
	require.ErrorContains(t, err, "signed by orchestrator, not by the calling inventory")
	_, err = v.Verify(raw, "orchestrator")
	require.NoError(t, err)
}

// An assertion signed right after a certificate rotation verifies: the
// chain travels with it.
func TestAssertionAfterRotation(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment")
	v := p.verifier("payment")
	before := sign(t, p.signer("orchestrator"), "payment", "alice", []string{"orders.place"})
	rotated := loadIdentity(t, p.ca, "orchestrator", nil)
	after := sign(t, token.NewSigner(rotated, "orchestrator", mtls.ID), "payment", "alice", []string{"orders.place"})
	require.NotEqual(t, strings.Split(before, ".")[0], strings.Split(after, ".")[0], "another x5c")
	for _, raw := range []string{before, after} {
		a, err := v.Verify(raw, "orchestrator")
		require.NoError(t, err)
		require.Equal(t, "alice", a.User)
	}
}

func TestAssertionConcurrent(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment")
	v := p.verifier("payment")
	s := p.signer("orchestrator")
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 16 {
		wg.Go(func() {
			for range 4 {
				raw, err := s.Sign("payment", "alice", []string{"p"})
				if err != nil {
					errs <- err
					return
				}
				peer := "orchestrator"
				if i%2 == 1 {
					peer = "order"
				}
				_, err = v.Verify(raw, peer)
				if (err == nil) != (peer == "orchestrator") {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}

// customIdentity loads, for service, a certificate of ca with the given
// extended key usages, which mtls.CA.Issue cannot make.
func customIdentity(t testing.TB, ca *mtls.CA, service string, usages []x509.ExtKeyUsage) *mtls.Source {
	t.Helper()
	is, err := ca.Issue(service, nil, time.Hour)
	require.NoError(t, err)
	cert := parseCertPEM(t, is.CertPEM)
	kp, err := ca.KeyPEM()
	require.NoError(t, err)
	b, _ := pem.Decode(kp)
	caKey, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	require.NoError(t, err)
	kb, _ := pem.Decode(is.KeyPEM)
	leafKey, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	require.NoError(t, err)
	tmpl := *cert
	tmpl.ExtKeyUsage = usages
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.Cert, leafKey.(*ecdsa.PrivateKey).Public(), caKey)
	require.NoError(t, err)
	is.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return loadIdentity(t, ca, service, &is)
}

func parseCertPEM(t testing.TB, b []byte) *x509.Certificate {
	t.Helper()
	blk, _ := pem.Decode(b)
	require.NotNil(t, blk)
	c, err := x509.ParseCertificate(blk.Bytes)
	require.NoError(t, err)
	return c
}
