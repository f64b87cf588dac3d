package token

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/jwx/v3/cert"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// The jwx implementation of assertions that Signer and AssertionVerifier
// replaced (issue 13), kept for the tests that old and new interoperate and
// for the benchmarks that compare them. Only tests reach it.

func jwxAlgorithm(a *sigAlg) jwa.SignatureAlgorithm {
	switch a {
	case es256:
		return jwa.ES256()
	case es384:
		return jwa.ES384()
	case es512:
		return jwa.ES512()
	case rs256:
		return jwa.RS256()
	}
	return jwa.EdDSA()
}

// JWXSign is Signer.Sign as jwx did it.
func JWXSign(s *Signer, callee, user string, permissions []string) (string, error) {
	tc, leaf := s.certs.Certificate()
	signer, ok := tc.PrivateKey.(crypto.Signer)
	if !ok {
		return "", errors.New("token: certificate key cannot sign")
	}
	a, err := algorithmFor(leaf.PublicKey)
	if err != nil {
		return "", err
	}
	var chain cert.Chain
	for _, der := range tc.Certificate {
		if err := chain.AddString(base64.StdEncoding.EncodeToString(der)); err != nil {
			return "", fmt.Errorf("token: x5c: %w", err)
		}
	}
	hdr := jws.NewHeaders()
	if err := hdr.Set(jws.X509CertChainKey, &chain); err != nil {
		return "", fmt.Errorf("token: x5c: %w", err)
	}
	if permissions == nil {
		permissions = []string{}
	}
	now := s.now()
	tok, err := jwt.NewBuilder().Issuer(s.id(s.self)).Audience([]string{s.id(callee)}).Subject(user).
		IssuedAt(now).Expiration(now.Add(AssertionTTL)).Claim(permissionsClaim, permissions).Build()
	if err != nil {
		return "", fmt.Errorf("token: build assertion: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwxAlgorithm(a), signer, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("token: sign assertion: %w", err)
	}
	return string(signed), nil
}

// JWXAssertionVerifier is AssertionVerifier as jwx did it, with its cache
// of verified chains keyed by the leaf's hash.
type JWXAssertionVerifier struct {
	*AssertionVerifier
	mu    sync.Mutex
	known map[[32]byte]knownChain
}

type knownChain struct {
	service string
	leaf    *x509.Certificate
	until   time.Time
}

func NewJWXAssertionVerifier(v *AssertionVerifier) *JWXAssertionVerifier {
	return &JWXAssertionVerifier{AssertionVerifier: v, known: map[[32]byte]knownChain{}}
}

func (v *JWXAssertionVerifier) Verify(raw, peerService string) (Assertion, error) {
	if len(raw) > MaxLength || strings.Count(raw, ".") != 2 {
		return Assertion{}, errors.New("malformed")
	}
	msg, err := jws.ParseString(raw)
	if err != nil || len(msg.Signatures()) != 1 {
		return Assertion{}, errors.New("malformed")
	}
	x5c, ok := msg.Signatures()[0].ProtectedHeaders().X509CertChain()
	if !ok || x5c.Len() == 0 {
		return Assertion{}, errors.New("no certificate chain (x5c)")
	}
	leaf, err := v.signerCert(x5c, peerService)
	if err != nil {
		return Assertion{}, err
	}
	a, err := algorithmFor(leaf.PublicKey)
	if err != nil {
		return Assertion{}, err
	}
	tok, err := jwt.ParseString(raw,
		jwt.WithKey(jwxAlgorithm(a), leaf.PublicKey),
		jwt.WithValidate(true),
		jwt.WithIssuer(v.id(peerService)),
		jwt.WithAudience(v.id(v.self)),
		jwt.WithRequiredClaim(jwt.SubjectKey),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithAcceptableSkew(5*time.Second),
		jwt.WithClock(jwt.ClockFunc(v.now)),
	)
	if err != nil {
		return Assertion{}, classify(err)
	}
	exp, _ := tok.Expiration()
	iat, ok := tok.IssuedAt()
	if !ok || exp.Sub(iat) > AssertionTTL+time.Second {
		return Assertion{}, errors.New("lifetime longer than allowed")
	}
	sub, _ := tok.Subject()
	if !validSubject(sub) {
		return Assertion{}, errors.New("subject is not a valid user id")
	}
	var perms []any
	if err := tok.Get(permissionsClaim, &perms); err != nil {
		return Assertion{}, errors.New("no permissions claim")
	}
	as := Assertion{User: sub, Expires: exp}
	for _, p := range perms {
		if s, ok := p.(string); ok && !slices.Contains(as.Permissions, s) {
			as.Permissions = append(as.Permissions, s)
		}
	}
	return as, nil
}

func (v *JWXAssertionVerifier) signerCert(x5c *cert.Chain, peerService string) (*x509.Certificate, error) {
	first, _ := x5c.Get(0)
	sum := sha256.Sum256(first)
	now := v.now()
	v.mu.Lock()
	k, ok := v.known[sum]
	v.mu.Unlock()
	if !ok || now.After(k.until) || now.After(k.leaf.NotAfter) {
		chain := make([]*x509.Certificate, x5c.Len())
		for i := range chain {
			b64, _ := x5c.Get(i)
			der, err := base64.StdEncoding.DecodeString(string(b64))
			if err != nil {
				return nil, errors.New("x5c is not base64")
			}
			if chain[i], err = x509.ParseCertificate(der); err != nil {
				return nil, errors.New("x5c holds an unreadable certificate")
			}
		}
		service, err := v.chains.VerifyChain(chain, x509.ExtKeyUsageClientAuth)
		if err != nil {
			return nil, fmt.Errorf("signer %w", err)
		}
		k = knownChain{service: service, leaf: chain[0], until: now.Add(time.Minute)}
		v.mu.Lock()
		if len(v.known) > 1024 {
			clear(v.known)
		}
		v.known[sum] = k
		v.mu.Unlock()
	}
	if k.service != peerService {
		return nil, fmt.Errorf("signed by %s, not by the calling %s", k.service, peerService)
	}
	return k.leaf, nil
}

// SetClock makes s sign, and v verify, at the times now returns.
func (s *Signer) SetClock(now func() time.Time)            { s.now = now }
func (v *AssertionVerifier) SetClock(now func() time.Time) { v.now = now }
func (v *Verifier) SetClock(now func() time.Time)          { v.now = now }

// KnownHeaders is how many verified protected headers v remembers.
func (v *AssertionVerifier) KnownHeaders() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.known)
}
