package token

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AssertionMetadataKey is the gRPC metadata entry of an on-behalf-of
// assertion.
const AssertionMetadataKey = "goodgo-on-behalf-of"

// AssertionTTL is how long an assertion is valid: long enough for one call
// and its transport retries, short enough that a leaked one is soon useless.
const AssertionTTL = time.Minute

// permissionsClaim lists what the service may do for the user.
const permissionsClaim = "perm"

// assertionSkew is the clock skew tolerated on an assertion's exp, iat and
// nbf.
const assertionSkew = 5 * time.Second

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

// An assertion is a compact JWS (RFC 7515) of a JWT (RFC 7519):
//
//	base64url({"alg":…,"typ":"JWT","x5c":[…]}) . base64url(claims) . base64url(signature)
//
// It is signed and verified here by hand with the standard library rather
// than with jwx: both ends are ours, the format is fixed, and jwx's generic
// machinery (reflection, parsing the JWS twice, decoding the x5c chain on
// every call) was 9-17% of a service's CPU in the order saga's profile.
// The format is byte for byte what jwx produced, so that services of either
// version interoperate.

// sigAlg is a JWS signature algorithm, always chosen from a key, never from
// a token's header.
type sigAlg struct {
	name string      // the JWS "alg"
	hash crypto.Hash // 0 for EdDSA, which signs the message itself
	size int         // ECDSA: the bytes of r and of s in the signature
}

var (
	es256 = &sigAlg{name: "ES256", hash: crypto.SHA256, size: 32}
	es384 = &sigAlg{name: "ES384", hash: crypto.SHA384, size: 48}
	es512 = &sigAlg{name: "ES512", hash: crypto.SHA512, size: 66}
	rs256 = &sigAlg{name: "RS256", hash: crypto.SHA256}
	edDSA = &sigAlg{name: "EdDSA"}
)

// algorithmFor picks the signature algorithm from the key itself, never
// from a token's header.
func algorithmFor(pub crypto.PublicKey) (*sigAlg, error) {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return es256, nil
		case elliptic.P384():
			return es384, nil
		case elliptic.P521():
			return es512, nil
		}
	case *rsa.PublicKey:
		return rs256, nil
	case ed25519.PublicKey:
		return edDSA, nil
	}
	return nil, fmt.Errorf("token: unsupported key type %T", pub)
}

// digest is what alg signs of msg.
func (a *sigAlg) digest(msg []byte) []byte {
	switch a.hash {
	case crypto.SHA256:
		s := sha256.Sum256(msg)
		return s[:]
	case crypto.SHA384:
		s := sha512.Sum384(msg)
		return s[:]
	case crypto.SHA512:
		s := sha512.Sum512(msg)
		return s[:]
	}
	return msg
}

// sign signs msg with key by alg, an ECDSA signature as JWS wants it: r
// and s big-endian, each a fixed size (RFC 7518 §3.4), not ASN.1.
func (a *sigAlg) sign(key crypto.Signer, msg []byte) ([]byte, error) {
	d := a.digest(msg)
	if a.size == 0 { // RS256 (PKCS #1 v1.5, which crypto.Hash options select) or EdDSA
		return key.Sign(rand.Reader, d, a.hash)
	}
	// crypto.Signer gives an ECDSA signature in ASN.1, an *ecdsa.PrivateKey
	// and a key held elsewhere (an HSM) alike.
	der, err := key.Sign(rand.Reader, d, a.hash)
	if err != nil {
		return nil, err
	}
	var rs struct{ R, S *big.Int }
	if rest, err := asn1.Unmarshal(der, &rs); err != nil || len(rest) != 0 {
		return nil, errors.New("ECDSA signature is not ASN.1")
	}
	r, s := rs.R, rs.S
	if r.Sign() <= 0 || s.Sign() <= 0 || r.BitLen() > 8*a.size || s.BitLen() > 8*a.size {
		return nil, errors.New("ECDSA signature out of range")
	}
	sig := make([]byte, 2*a.size)
	r.FillBytes(sig[:a.size])
	s.FillBytes(sig[a.size:])
	return sig, nil
}

// verify reports whether sig is pub's signature of msg by alg.
func (a *sigAlg) verify(pub crypto.PublicKey, msg, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if a.size == 0 || len(sig) != 2*a.size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:a.size])
		s := new(big.Int).SetBytes(sig[a.size:])
		return ecdsa.Verify(k, a.digest(msg), r, s)
	case *rsa.PublicKey:
		return a == rs256 && rsa.VerifyPKCS1v15(k, a.hash, a.digest(msg), sig) == nil
	case ed25519.PublicKey:
		return a == edDSA && ed25519.Verify(k, msg, sig)
	}
	return false
}

var b64url = base64.RawURLEncoding.Strict()

// Signer signs a service's on-behalf-of assertions with the key of its own
// certificate; the certificate chain travels in the x5c header, so that a
// callee can verify an assertion signed just after a certificate rotation
// over a connection established before it. Safe for concurrent use.
type Signer struct {
	certs Certificates
	id    IDFunc
	self  string
	now   func() time.Time

	// The encoded protected header of the current certificate: it changes
	// only when the certificate rotates, which swaps both pointers (they
	// are kept, so never reused for another certificate).
	mu      sync.Mutex
	hdrCert *tls.Certificate
	hdrLeaf *x509.Certificate
	hdr     string
	hdrAlg  *sigAlg

	// Assertions signed lately, for reuse: a service that calls the same
	// callee for the same user again within reuseAssertionsFor (a saga's
	// compensation, a retry, a customer's next order) sends the assertion
	// it signed before instead of signing again, as clients of an OAuth
	// server keep a token until it nears expiry. An entry belongs to the
	// certificate that signed it and goes with it.
	amu       sync.Mutex
	signed    map[assertionFor]signedAssertion
	maxSigned int
}

// assertionFor is what an assertion says apart from its times: the callee,
// the user and the permissions (length-prefixed, so that no two lists
// join alike).
type assertionFor struct {
	callee, user, perms string
}

type signedAssertion struct {
	raw  string
	cert *tls.Certificate
	leaf *x509.Certificate
	at   time.Time // its iat
}

// reuseAssertionsFor is how long a signed assertion is reused: half its
// lifetime, so that a callee always receives one with at least half a
// minute to live (a transport retry or a slow queue still fits).
const reuseAssertionsFor = AssertionTTL / 2

// maxSignedAssertions bounds the signed-assertion cache (about a megabyte).
const maxSignedAssertions = 4096

// NewSigner returns the Signer of service self.
func NewSigner(certs Certificates, self string, id IDFunc) *Signer {
	return &Signer{certs: certs, id: id, self: self, now: time.Now,
		signed: map[assertionFor]signedAssertion{}, maxSigned: maxSignedAssertions}
}

// protectedHeader is an assertion's JOSE header, its members in the order
// jwx wrote them.
type protectedHeader struct {
	Alg string   `json:"alg"`
	Typ string   `json:"typ"`
	X5C []string `json:"x5c"`
}

// assertionClaims are an assertion's claims, in the order jwx wrote them.
type assertionClaims struct {
	Aud  []string `json:"aud"`
	Exp  int64    `json:"exp"`
	Iat  int64    `json:"iat"`
	Iss  string   `json:"iss"`
	Perm []string `json:"perm"`
	Sub  string   `json:"sub"`
}

// header returns the encoded protected header for tc and its algorithm.
func (s *Signer) header(tc *tls.Certificate, leaf *x509.Certificate) (string, *sigAlg, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hdrCert == tc && s.hdrLeaf == leaf && s.hdr != "" {
		return s.hdr, s.hdrAlg, nil
	}
	alg, err := algorithmFor(leaf.PublicKey)
	if err != nil {
		return "", nil, err
	}
	h := protectedHeader{Alg: alg.name, Typ: "JWT", X5C: make([]string, len(tc.Certificate))}
	for i, der := range tc.Certificate {
		h.X5C[i] = base64.StdEncoding.EncodeToString(der)
	}
	b, err := json.Marshal(h)
	if err != nil {
		return "", nil, fmt.Errorf("token: x5c: %w", err)
	}
	s.hdrCert, s.hdrLeaf, s.hdr, s.hdrAlg = tc, leaf, b64url.EncodeToString(b), alg
	return s.hdr, alg, nil
}

// Sign returns an assertion that self acts for user with permissions, for
// the callee service only, valid for AssertionTTL: one signed by the
// current certificate at most reuseAssertionsFor ago, or a new one.
func (s *Signer) Sign(callee, user string, permissions []string) (string, error) {
	tc, leaf := s.certs.Certificate()
	k := assertionFor{callee: callee, user: user, perms: joinPermissions(permissions)}
	now := s.now()
	if raw, ok := s.reusable(k, tc, leaf, now); ok {
		return raw, nil
	}
	raw, err := s.sign(tc, leaf, callee, user, permissions, now)
	if err != nil {
		return "", err
	}
	s.keep(k, signedAssertion{raw: raw, cert: tc, leaf: leaf, at: now}, now)
	return raw, nil
}

// joinPermissions encodes permissions as one string, each prefixed with
// its length.
func joinPermissions(permissions []string) string {
	n := 0
	for _, p := range permissions {
		n += len(p) + 4
	}
	b := make([]byte, 0, n)
	for _, p := range permissions {
		b = strconv.AppendInt(b, int64(len(p)), 10)
		b = append(append(b, ':'), p...)
	}
	return string(b)
}

// reusable returns the assertion for k that the certificate tc signed
// less than reuseAssertionsFor ago, if there is one; one "signed" after
// now (the clock went back) would look issued in the future.
func (s *Signer) reusable(k assertionFor, tc *tls.Certificate, leaf *x509.Certificate, now time.Time) (string, bool) {
	s.amu.Lock()
	defer s.amu.Unlock()
	e, ok := s.signed[k]
	if !ok || e.cert != tc || e.leaf != leaf || now.Before(e.at) || !now.Before(e.at.Add(reuseAssertionsFor)) {
		return "", false
	}
	return e.raw, true
}

// keep remembers e for reuse; a full cache first drops what expired, and
// then everything.
func (s *Signer) keep(k assertionFor, e signedAssertion, now time.Time) {
	s.amu.Lock()
	defer s.amu.Unlock()
	makeRoom(s.signed, s.maxSigned, now, func(e signedAssertion) time.Time { return e.at.Add(reuseAssertionsFor) })
	s.signed[k] = e
}

// sign signs a new assertion with tc's key, issued at now.
func (s *Signer) sign(tc *tls.Certificate, leaf *x509.Certificate, callee, user string, permissions []string, now time.Time) (string, error) {
	key, ok := tc.PrivateKey.(crypto.Signer)
	if !ok {
		return "", errors.New("token: certificate key cannot sign")
	}
	hdr, alg, err := s.header(tc, leaf)
	if err != nil {
		return "", err
	}
	if permissions == nil {
		permissions = []string{} // "perm":[] — a claim the verifier requires, even empty
	}
	payload, err := json.Marshal(assertionClaims{
		Aud: []string{s.id(callee)}, Exp: now.Add(AssertionTTL).Unix(), Iat: now.Unix(),
		Iss: s.id(s.self), Perm: permissions, Sub: user,
	})
	if err != nil {
		return "", fmt.Errorf("token: build assertion: %w", err)
	}
	sigLen := 2 * alg.size
	if sigLen == 0 {
		sigLen = 512 // RSA 4096 or an Ed25519 signature fits
	}
	buf := make([]byte, 0, len(hdr)+2+b64url.EncodedLen(len(payload))+b64url.EncodedLen(sigLen))
	buf = append(buf, hdr...)
	buf = append(buf, '.')
	buf = b64url.AppendEncode(buf, payload)
	sig, err := alg.sign(key, buf)
	if err != nil {
		return "", fmt.Errorf("token: sign assertion: %w", err)
	}
	buf = append(buf, '.')
	buf = b64url.AppendEncode(buf, sig)
	return string(buf), nil
}

// Assertion is what a verified on-behalf-of assertion says.
type Assertion struct {
	User        string
	Permissions []string
	Expires     time.Time
}

// AssertionVerifier verifies the assertions a service receives. A protected
// header whose chain was verified and whose key verified a signature is
// remembered for a minute by its hash, so that a repeat header (the same
// signer until it rotates) costs one hash: no base64, JSON or x509 parsing,
// no chain verification. Safe for concurrent use.
type AssertionVerifier struct {
	chains ChainVerifier
	id     IDFunc
	self   string
	now    func() time.Time

	mu    sync.Mutex
	known map[[32]byte]knownHeader

	// Assertions verified lately, by the SHA-256 of the whole assertion:
	// a caller reuses an assertion for half its lifetime (Signer), and
	// verifying its signature again each time was a fifth of a service's
	// CPU on a busy path. An entry holds until the assertion's exp, but no
	// longer than its header is known (the chain is verified again after
	// that) nor verifiedFor, as the bearer tokens' cache does; the calling
	// peer is checked on every call. Refusals are never cached.
	vmu         sync.Mutex
	verified    map[[32]byte]verifiedAssertion
	maxVerified int
}

type verifiedAssertion struct {
	a       Assertion
	service string // the signer, which must be the calling peer
	until   time.Time
}

// knownHeader is what a verified protected header says: the service its
// chain names, the chain's leaf and the algorithm of the leaf's key (which
// the header's alg matched).
type knownHeader struct {
	service string
	leaf    *x509.Certificate
	alg     *sigAlg
	until   time.Time
}

// maxKnownHeaders bounds the verified-header cache: a handful of replicas
// and rotations, never this many.
const maxKnownHeaders = 1024

// NewAssertionVerifier returns the verifier of service self's incoming
// assertions, trusting the chains that chains accepts.
func NewAssertionVerifier(chains ChainVerifier, self string, id IDFunc) *AssertionVerifier {
	return &AssertionVerifier{chains: chains, id: id, self: self, now: time.Now, known: map[[32]byte]knownHeader{},
		verified: map[[32]byte]verifiedAssertion{}, maxVerified: maxVerifiedTokens}
}

// Verify checks raw, presented over a connection whose verified peer is
// peerService: the x5c chain must be trusted and name peerService, the
// signature must be its key's by the algorithm of that key (the header's
// alg must be it), the issuer peerService, the audience this service, and
// the assertion unexpired and naming a user. Errors say which check
// failed, never echoing the assertion.
func (v *AssertionVerifier) Verify(raw, peerService string) (Assertion, error) {
	if len(raw) > MaxLength {
		return Assertion{}, errors.New("malformed")
	}
	now := v.now()
	whole := sha256.Sum256([]byte(raw))
	if e, ok := v.cached(whole, now); ok {
		if e.service != peerService {
			return Assertion{}, fmt.Errorf("signed by %s, not by the calling %s", e.service, peerService)
		}
		e.a.Permissions = slices.Clone(e.a.Permissions)
		return e.a, nil
	}
	// Checked after the cache: a remembered assertion passed it, and the
	// byte-by-byte check of a few kilobytes (the header carries the
	// certificate chain) was most of a remembered assertion's cost.
	hdrSeg, payloadSeg, sigSeg, ok := splitCompact(raw)
	if !ok {
		return Assertion{}, errors.New("malformed")
	}
	sum := sha256.Sum256([]byte(hdrSeg))
	v.mu.Lock()
	k, known := v.known[sum]
	v.mu.Unlock()
	if !known || now.After(k.until) || now.After(k.leaf.NotAfter) {
		var err error
		if k, err = v.verifyHeader(hdrSeg, now); err != nil {
			return Assertion{}, err
		}
		known = false
	}
	if k.service != peerService {
		return Assertion{}, fmt.Errorf("signed by %s, not by the calling %s", k.service, peerService)
	}
	sig, err := b64url.DecodeString(sigSeg)
	if err != nil || !k.alg.verify(k.leaf.PublicKey, []byte(raw[:len(hdrSeg)+1+len(payloadSeg)]), sig) {
		return Assertion{}, ErrSignature
	}
	if !known { // remembered only once its key has signed: a stranger's headers never fill the cache
		v.mu.Lock()
		if len(v.known) >= maxKnownHeaders {
			clear(v.known)
		}
		v.known[sum] = k
		v.mu.Unlock()
	}
	payload, err := b64url.DecodeString(payloadSeg)
	if err != nil {
		return Assertion{}, ErrMalformed
	}
	a, err := v.checkClaims(payload, peerService, now)
	if err != nil {
		return Assertion{}, err
	}
	until := now.Add(verifiedFor)
	for _, t := range []time.Time{a.Expires, k.until, k.leaf.NotAfter} {
		if t.Before(until) {
			until = t
		}
	}
	v.remember(whole, verifiedAssertion{a: a, service: k.service, until: until}, now)
	a.Permissions = slices.Clone(a.Permissions)
	return a, nil
}

// cached returns the entry of an assertion verified lately.
func (v *AssertionVerifier) cached(sum [32]byte, now time.Time) (verifiedAssertion, bool) {
	v.vmu.Lock()
	defer v.vmu.Unlock()
	e, ok := v.verified[sum]
	if !ok {
		return verifiedAssertion{}, false
	}
	if !now.Before(e.until) {
		delete(v.verified, sum)
		return verifiedAssertion{}, false
	}
	return e, true
}

// remember caches e until e.until; a full cache first drops what expired,
// and then everything.
func (v *AssertionVerifier) remember(sum [32]byte, e verifiedAssertion, now time.Time) {
	if !now.Before(e.until) { // accepted within the skew after exp: verified each time
		return
	}
	v.vmu.Lock()
	defer v.vmu.Unlock()
	makeRoom(v.verified, v.maxVerified, now, func(e verifiedAssertion) time.Time { return e.until })
	v.verified[sum] = e
}

// splitCompact splits a compact JWS into its three segments, each only of
// the base64url alphabet (no padding, no whitespace: Go's decoder would
// skip newlines), the header, payload and signature non-empty.
func splitCompact(raw string) (hdr, payload, sig string, ok bool) {
	if len(raw) > MaxLength {
		return "", "", "", false
	}
	hdr, rest, ok1 := strings.Cut(raw, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || hdr == "" || payload == "" || sig == "" {
		return "", "", "", false
	}
	for i := range len(raw) {
		if !compactByte(raw[i]) {
			return "", "", "", false
		}
	}
	if strings.IndexByte(sig, '.') >= 0 {
		return "", "", "", false
	}
	return hdr, payload, sig, true
}

// compactByte reports whether c may appear in a compact JWS: the base64url
// alphabet (no padding) and the dots between the segments.
func compactByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

// verifyHeader reads a protected header: a JSON object with "alg" and
// "x5c" once each and no "crit" (no extension is understood here); the
// chain must be trusted and alg that of its leaf's key.
func (v *AssertionVerifier) verifyHeader(seg string, now time.Time) (knownHeader, error) {
	b, err := b64url.DecodeString(seg)
	if err != nil {
		return knownHeader{}, errors.New("malformed")
	}
	var alg string
	var x5c []string
	var hasAlg bool
	err = members(b, func(name string, v []byte) error {
		switch name {
		case "alg":
			hasAlg = true
			return json.Unmarshal(v, &alg)
		case "x5c":
			return json.Unmarshal(v, &x5c)
		case "crit":
			return errors.New("crit")
		}
		return nil
	})
	if err != nil || !hasAlg {
		return knownHeader{}, errors.New("malformed header")
	}
	if len(x5c) == 0 {
		return knownHeader{}, errors.New("no certificate chain (x5c)")
	}
	chain := make([]*x509.Certificate, len(x5c))
	for i, s := range x5c {
		der, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return knownHeader{}, errors.New("x5c is not base64")
		}
		if chain[i], err = x509.ParseCertificate(der); err != nil {
			return knownHeader{}, errors.New("x5c holds an unreadable certificate")
		}
	}
	service, err := v.chains.VerifyChain(chain, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return knownHeader{}, fmt.Errorf("signer %w", err)
	}
	a, err := algorithmFor(chain[0].PublicKey)
	if err != nil {
		return knownHeader{}, err
	}
	if alg != a.name {
		return knownHeader{}, fmt.Errorf("%w: the header's alg is not that of the signer's key (%s)", ErrSignature, a.name)
	}
	return knownHeader{service: service, leaf: chain[0], alg: a, until: now.Add(time.Minute)}, nil
}

// checkClaims reads and checks the claims of an assertion whose signature
// verified: the same checks, with the same skew, as jwx made.
func (v *AssertionVerifier) checkClaims(payload []byte, peerService string, now time.Time) (Assertion, error) {
	var (
		iss, sub             string
		aud                  []string
		exp, iat, nbf        time.Time
		hasIss, hasSub, hasP bool
		hasAud               bool
		perms                []any
	)
	err := members(payload, func(name string, v []byte) error {
		switch name {
		case "iss":
			hasIss = true
			return json.Unmarshal(v, &iss)
		case "sub":
			hasSub = true
			return json.Unmarshal(v, &sub)
		case "aud":
			hasAud = true
			var err error
			aud, err = audience(v)
			return err
		case "exp":
			return numericDate(v, &exp)
		case "iat":
			return numericDate(v, &iat)
		case "nbf":
			return numericDate(v, &nbf)
		case permissionsClaim:
			// Not a list (null included): as if absent.
			if hasP = json.Unmarshal(v, &perms) == nil && perms != nil; !hasP {
				perms = nil
			}
			return nil
		}
		return nil
	})
	if err != nil {
		return Assertion{}, ErrMalformed
	}
	switch {
	case !hasSub:
		return Assertion{}, fmt.Errorf("%w: required claim sub is missing", ErrClaims)
	case exp.IsZero():
		return Assertion{}, fmt.Errorf("%w: required claim exp is missing", ErrClaims)
	case !iat.IsZero() && now.Before(iat.Add(-assertionSkew)):
		return Assertion{}, fmt.Errorf("%w: issued in the future", ErrClaims)
	case !now.Before(exp.Add(assertionSkew)):
		return Assertion{}, ErrExpired
	case !nbf.IsZero() && now.Before(nbf.Add(-assertionSkew)):
		return Assertion{}, fmt.Errorf("%w: not valid yet", ErrClaims)
	case !hasIss || iss != v.id(peerService):
		return Assertion{}, ErrIssuer
	case !hasAud || !slices.Contains(aud, v.id(v.self)):
		return Assertion{}, ErrAudience
	case iat.IsZero() || exp.Sub(iat) > AssertionTTL+time.Second:
		return Assertion{}, errors.New("lifetime longer than allowed")
	case !validSubject(sub):
		return Assertion{}, errors.New("subject is not a valid user id")
	case !hasP:
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

// members calls f with the name and the value (its JSON text, valid) of
// each member of the JSON object b. Anything but one object, or a name
// twice (also when spelt with escapes), is refused: two "alg" could be
// read differently by two parsers, and encoding/json keeps the last.
func members(b []byte, f func(name string, value []byte) error) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return errors.New("not a JSON object")
	}
	names := make([]string, 0, 8)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		name, _ := t.(string) // inside an object, the tokenizer yields names here
		if slices.Contains(names, name) {
			return errors.New("a member twice")
		}
		names = append(names, name)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return err
		}
		if err := f(name, v); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	return nil
}

// audience reads an "aud" claim: a string or a list of strings (RFC 7519
// §4.1.3).
func audience(v []byte) ([]string, error) {
	if v[0] == '"' {
		var s string
		err := json.Unmarshal(v, &s)
		return []string{s}, err
	}
	var list []string
	if err := json.Unmarshal(v, &list); err != nil || list == nil {
		return nil, errors.New("aud is neither a string nor a list of strings")
	}
	return list, nil
}

// numericDate reads a NumericDate (RFC 7519 §2): seconds since the epoch,
// a JSON number, whole or not; a fraction is dropped, as jwx dropped it.
func numericDate(v []byte, t *time.Time) error {
	var n json.Number
	if err := json.Unmarshal(v, &n); err != nil {
		return err
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		*t = time.Unix(i, 0)
		return nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f < -1e15 || f > 1e15 {
		return errors.New("not a NumericDate")
	}
	*t = time.Unix(int64(f), 0)
	return nil
}
