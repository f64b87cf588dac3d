package token

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
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

// AssertionMetadataKey is the gRPC metadata entry of an on-behalf-of
// assertion.
const AssertionMetadataKey = "goodgo-on-behalf-of"

// AssertionTTL is how long an assertion is valid: long enough for one call
// and its transport retries, short enough that a leaked one is soon useless.
const AssertionTTL = time.Minute

// permissionsClaim lists what the service may do for the user.
const permissionsClaim = "perm"

// Certificates is the signing identity of a service: its current mTLS
// certificate and key (mtls.Source).
type Certificates interface {
	Certificate() (*tls.Certificate, *x509.Certificate)
}

// ChainVerifier verifies a certificate chain against the trusted CA and
// returns the service it identifies (mtls.Source).
type ChainVerifier interface {
	VerifyChain(chain []*x509.Certificate, usage x509.ExtKeyUsage) (string, error)
}

// IDFunc turns a service name into its SPIFFE ID (mtls.ID).
type IDFunc func(service string) string

// Signer signs a service's on-behalf-of assertions with the key of its own
// certificate; the certificate chain travels in the x5c header, so that a
// callee can verify an assertion signed just after a certificate rotation
// over a connection established before it. Safe for concurrent use.
type Signer struct {
	certs Certificates
	id    IDFunc
	self  string
	now   func() time.Time
}

// NewSigner returns the Signer of service self.
func NewSigner(certs Certificates, self string, id IDFunc) *Signer {
	return &Signer{certs: certs, id: id, self: self, now: time.Now}
}

// Sign returns an assertion that self acts for user with permissions, for
// the callee service only, valid for AssertionTTL.
func (s *Signer) Sign(callee, user string, permissions []string) (string, error) {
	tc, leaf := s.certs.Certificate()
	signer, ok := tc.PrivateKey.(crypto.Signer)
	if !ok {
		return "", errors.New("token: certificate key cannot sign")
	}
	alg, err := algorithmFor(leaf.PublicKey)
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
		permissions = []string{} // "perm":[] — a claim the verifier requires, even empty
	}
	now := s.now()
	tok, err := jwt.NewBuilder().Issuer(s.id(s.self)).Audience([]string{s.id(callee)}).Subject(user).
		IssuedAt(now).Expiration(now.Add(AssertionTTL)).Claim(permissionsClaim, permissions).Build()
	if err != nil {
		return "", fmt.Errorf("token: build assertion: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(alg, signer, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		return "", fmt.Errorf("token: sign assertion: %w", err)
	}
	return string(signed), nil
}

// algorithmFor picks the signature algorithm from the key itself, never
// from a token's header.
func algorithmFor(pub crypto.PublicKey) (jwa.SignatureAlgorithm, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jwa.ES256(), nil
		case elliptic.P384():
			return jwa.ES384(), nil
		case elliptic.P521():
			return jwa.ES512(), nil
		}
	case *rsa.PublicKey:
		return jwa.RS256(), nil
	case ed25519.PublicKey:
		return jwa.EdDSA(), nil
	}
	return jwa.SignatureAlgorithm{}, fmt.Errorf("token: unsupported key type %T", pub)
}

// Assertion is what a verified on-behalf-of assertion says.
type Assertion struct {
	User        string
	Permissions []string
	Expires     time.Time
}

// AssertionVerifier verifies the assertions a service receives. Verified
// certificate chains are remembered for a minute by their leaf's hash, so
// that the chain is not verified again on every call. Safe for concurrent
// use.
type AssertionVerifier struct {
	chains ChainVerifier
	id     IDFunc
	self   string
	now    func() time.Time

	mu    sync.Mutex
	known map[[32]byte]knownChain
}

type knownChain struct {
	service string
	leaf    *x509.Certificate
	until   time.Time
}

// NewAssertionVerifier returns the verifier of service self's incoming
// assertions, trusting the chains that chains accepts.
func NewAssertionVerifier(chains ChainVerifier, self string, id IDFunc) *AssertionVerifier {
	return &AssertionVerifier{chains: chains, id: id, self: self, now: time.Now, known: map[[32]byte]knownChain{}}
}

// Verify checks raw, presented over a connection whose verified peer is
// peerService: the x5c chain must be trusted and name peerService, the
// signature must be its key's, the issuer peerService, the audience this
// service, and the assertion unexpired and naming a user. Errors say which
// check failed, never echoing the assertion.
func (v *AssertionVerifier) Verify(raw, peerService string) (Assertion, error) {
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
	alg, err := algorithmFor(leaf.PublicKey)
	if err != nil {
		return Assertion{}, err
	}
	tok, err := jwt.ParseString(raw,
		jwt.WithKey(alg, leaf.PublicKey),
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
	a := Assertion{User: sub, Expires: exp}
	for _, p := range perms {
		if s, ok := p.(string); ok && !slices.Contains(a.Permissions, s) {
			a.Permissions = append(a.Permissions, s)
		}
	}
	return a, nil
}

// signerCert verifies the x5c chain (or finds it verified) and returns its
// leaf, which must name peerService.
func (v *AssertionVerifier) signerCert(x5c *cert.Chain, peerService string) (*x509.Certificate, error) {
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
		if len(v.known) > 1024 { // a handful of replicas and rotations: never this many
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
