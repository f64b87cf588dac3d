// Package token verifies the two kinds of signed tokens GoodGo accepts as
// identity, both JWTs with asymmetric signatures:
//
//   - an end user's bearer token, issued by the identity provider: the
//     subject is the user, the roles or scope claims grant operator and
//     admin; signature, expiry, issuer and audience are checked against the
//     provider's keys (a JWKS file or URL), with lestrrat-go/jwx — [Verifier];
//   - a service's on-behalf-of assertion, signed with the key of the
//     service's own mTLS certificate, naming the user it acts for and the
//     permissions it acts with, for one callee and a minute, signed and
//     verified with the standard library — [Signer] and [AssertionVerifier].
//
// It also mints development tokens ([Issuer]) for local runs and tests.
package token

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/lestrrat-go/httprc/v3"
	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// MaxLength bounds a token's size: anything longer is refused unread.
const MaxLength = 8 << 10

// Config says whose tokens a Verifier accepts.
type Config struct {
	// Issuer is the required "iss" claim.
	Issuer string
	// Audience must be among the "aud" claim's values.
	Audience string
	// JWKSFile is a JSON Web Key Set file of the issuer's public keys,
	// reloaded when it changes (key rotation without a restart).
	JWKSFile string
	// JWKSURL is the issuer's JWKS endpoint, fetched at start and refreshed
	// in the background. Exactly one of JWKSFile and JWKSURL.
	JWKSURL string
	// Leeway is the clock skew tolerated on exp, nbf and iat (default 30s).
	Leeway time.Duration
}

// Claims are what a verified bearer token says.
type Claims struct {
	Subject string
	// Roles are the known roles granted by the "roles" claim (a list) or
	// the "scope" claim (space separated), such as "operator" and "admin".
	Roles   []string
	Expires time.Time
}

// Reasons a bearer token is refused, for the caller's message and metrics.
var (
	ErrMalformed = errors.New("malformed")
	ErrExpired   = errors.New("expired")
	ErrSignature = errors.New("signature not valid for the issuer's keys")
	ErrIssuer    = errors.New("wrong issuer")
	ErrAudience  = errors.New("wrong audience")
	ErrClaims    = errors.New("claims not valid")
)

// Verifier verifies bearer tokens. Safe for concurrent use.
type Verifier struct {
	cfg   Config
	keys  func(ctx context.Context) (jwk.Set, error)
	cache *jwk.Cache
	now   func() time.Time

	mu       sync.Mutex
	fileRaw  []byte
	fileSet  jwk.Set
	nextRead time.Time

	// Tokens verified lately, by the SHA-256 of the raw token: a client
	// sends the same token with every call until it expires, and parsing
	// and verifying it again each time was 6% of a service's CPU. An entry
	// holds until the token's exp but at most verifiedFor (30s), as Envoy's
	// jwt_authn caches verified tokens: the bound keeps a key removed from
	// the JWKS (a URL whose refresh this package does not see happen) from
	// being honoured for longer; and every entry goes as soon as the key set
	// is seen to be another one. Refusals are never cached.
	vmu         sync.Mutex
	verified    map[[32]byte]verifiedToken
	verifiedSet jwk.Set // the key set the entries were verified with
	maxVerified int
}

// verifiedFor bounds how long a verified token is trusted without its
// signature being verified again.
const verifiedFor = 30 * time.Second

// maxVerifiedTokens bounds the verified-token cache (about a megabyte).
const maxVerifiedTokens = 4096

type verifiedToken struct {
	claims Claims
	until  time.Time
}

// NewVerifier returns a Verifier for cfg; it reads the key file or fetches
// the key set once and fails when it cannot. ctx bounds that first fetch;
// Close stops the background refresh of a JWKS URL.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("token: issuer and audience are required")
	}
	if (cfg.JWKSFile == "") == (cfg.JWKSURL == "") {
		return nil, errors.New("token: exactly one of a JWKS file and a JWKS URL is required")
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = 30 * time.Second
	}
	v := &Verifier{cfg: cfg, now: time.Now, verified: map[[32]byte]verifiedToken{}, maxVerified: maxVerifiedTokens}
	if cfg.JWKSFile != "" {
		if _, err := v.fileKeys(ctx); err != nil {
			return nil, err
		}
		v.keys = v.fileKeys
		return v, nil
	}
	// One fetch first, so that a binary whose identity provider is down
	// fails at start with the reason instead of waiting; then the cache
	// refreshes the set in the background (its goroutines live until
	// Close, not until ctx ends).
	first, err := jwk.Fetch(ctx, cfg.JWKSURL)
	if err == nil {
		_, err = publicOnly(first)
	}
	if err != nil {
		return nil, fmt.Errorf("token: fetch JWKS %s: %w", cfg.JWKSURL, err)
	}
	cache, err := jwk.NewCache(context.WithoutCancel(ctx), httprc.NewClient())
	if err != nil {
		return nil, fmt.Errorf("token: JWKS cache: %w", err)
	}
	if err := cache.Register(ctx, cfg.JWKSURL, jwk.WithWaitReady(false)); err != nil {
		_ = cache.Shutdown(ctx)
		return nil, fmt.Errorf("token: JWKS cache %s: %w", cfg.JWKSURL, err)
	}
	v.cache = cache
	v.keys = func(ctx context.Context) (jwk.Set, error) {
		set, err := cache.Lookup(ctx, cfg.JWKSURL)
		if err != nil { // not fetched by the cache yet: the set fetched above
			set = first
		}
		return publicOnly(set)
	}
	return v, nil
}

// Close stops refreshing a JWKS URL.
func (v *Verifier) Close(ctx context.Context) {
	if v.cache != nil {
		_ = v.cache.Shutdown(ctx)
	}
}

// fileKeys returns the key file's set, re-read at most once a second and
// parsed again only when its content changed. A file that stops parsing
// keeps the last good set.
func (v *Verifier) fileKeys(context.Context) (jwk.Set, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if v.fileSet != nil && now.Before(v.nextRead) {
		return v.fileSet, nil
	}
	v.nextRead = now.Add(time.Second)
	raw, err := os.ReadFile(v.cfg.JWKSFile)
	if err == nil && v.fileSet != nil && string(raw) == string(v.fileRaw) {
		return v.fileSet, nil
	}
	var set jwk.Set
	if err == nil {
		set, err = jwk.Parse(raw)
	}
	if err == nil {
		set, err = publicOnly(set)
	}
	if err != nil {
		if v.fileSet != nil {
			return v.fileSet, nil
		}
		return nil, fmt.Errorf("token: JWKS file %s: %w", v.cfg.JWKSFile, err)
	}
	v.fileRaw, v.fileSet = raw, set
	return set, nil
}

// publicOnly refuses a key set with a symmetric or private key in it: a
// published HMAC key would let anyone mint tokens.
func publicOnly(set jwk.Set) (jwk.Set, error) {
	if set.Len() == 0 {
		return nil, errors.New("no keys")
	}
	for i := range set.Len() {
		k, _ := set.Key(i)
		switch k.KeyType() {
		case jwa.EC(), jwa.RSA(), jwa.OKP():
		default:
			return nil, fmt.Errorf("key %d has type %s; only public EC, RSA and OKP keys are accepted", i, k.KeyType())
		}
		if isPrivate(k) {
			return nil, fmt.Errorf("key %d is a private key; publish only public keys", i)
		}
	}
	return set, nil
}

func isPrivate(k jwk.Key) bool {
	switch k.(type) {
	case jwk.ECDSAPrivateKey, jwk.RSAPrivateKey, jwk.OKPPrivateKey:
		return true
	}
	return false
}

// Verify checks raw (the token, without "Bearer ") and returns its claims.
// Errors wrap one of the Err* reasons.
func (v *Verifier) Verify(ctx context.Context, raw string) (Claims, error) {
	set, err := v.keysFor(ctx, raw)
	if err != nil {
		return Claims{}, err
	}
	sum := sha256.Sum256([]byte(raw))
	now := v.now()
	if c, ok := v.cached(set, sum, now); ok {
		return c, nil
	}
	c, err := v.verify(raw, set)
	if err != nil {
		return Claims{}, err
	}
	v.remember(set, sum, c, now)
	return c, nil
}

// keysFor refuses a raw token that cannot be a JWT, else returns the key
// set to verify it with.
func (v *Verifier) keysFor(ctx context.Context, raw string) (jwk.Set, error) {
	if raw == "" || len(raw) > MaxLength || strings.Count(raw, ".") != 2 {
		return nil, ErrMalformed
	}
	set, err := v.keys(ctx)
	if err != nil {
		return nil, fmt.Errorf("token: keys: %w", err)
	}
	return set, nil
}

// cached returns the claims of a token verified lately with set, a copy
// that the caller may change.
func (v *Verifier) cached(set jwk.Set, sum [32]byte, now time.Time) (Claims, bool) {
	v.vmu.Lock()
	defer v.vmu.Unlock()
	if v.verifiedSet != set { // the keys changed: what they verified is verified no more
		clear(v.verified)
		v.verifiedSet = set
		return Claims{}, false
	}
	e, ok := v.verified[sum]
	if !ok {
		return Claims{}, false
	}
	if !now.Before(e.until) {
		delete(v.verified, sum)
		return Claims{}, false
	}
	c := e.claims
	c.Roles = slices.Clone(c.Roles)
	return c, true
}

// remember caches c, verified with set at now, until the token expires
// but at most verifiedFor.
func (v *Verifier) remember(set jwk.Set, sum [32]byte, c Claims, now time.Time) {
	until := now.Add(verifiedFor)
	if c.Expires.Before(until) {
		until = c.Expires
	}
	if !now.Before(until) { // expired already (accepted within the leeway): verify it each time
		return
	}
	c.Roles = slices.Clone(c.Roles)
	v.vmu.Lock()
	defer v.vmu.Unlock()
	if v.verifiedSet != set {
		clear(v.verified)
		v.verifiedSet = set
	}
	makeRoom(v.verified, v.maxVerified, now, func(e verifiedToken) time.Time { return e.until })
	v.verified[sum] = verifiedToken{claims: c, until: until}
}

// makeRoom readies cache, bounded to limit entries, for one more: a full one
// first drops the entries whose until has passed, then, still full,
// everything (a burst of new entries costs re-verifying, never memory).
func makeRoom[K comparable, V any](cache map[K]V, limit int, now time.Time, until func(V) time.Time) {
	if len(cache) < limit {
		return
	}
	for k, e := range cache {
		if !now.Before(until(e)) {
			delete(cache, k)
		}
	}
	if len(cache) >= limit {
		clear(cache)
	}
}

// verify checks raw against set with jwx.
func (v *Verifier) verify(raw string, set jwk.Set) (Claims, error) {
	tok, err := jwt.ParseString(raw,
		jwt.WithKeySet(set, jws.WithInferAlgorithmFromKey(true)),
		jwt.WithValidate(true),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithRequiredClaim(jwt.SubjectKey),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithAcceptableSkew(v.cfg.Leeway),
		jwt.WithClock(jwt.ClockFunc(v.now)),
	)
	if err != nil {
		return Claims{}, classify(err)
	}
	sub, _ := tok.Subject()
	exp, _ := tok.Expiration()
	if !validSubject(sub) {
		return Claims{}, fmt.Errorf("%w: subject must be 1-128 printable ASCII characters", ErrClaims)
	}
	return Claims{Subject: sub, Roles: roles(tok), Expires: exp}, nil
}

// classify maps jwx's errors to the reasons callers are told.
func classify(err error) error {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return ErrExpired
	case errors.Is(err, jwt.InvalidIssuerError()):
		return ErrIssuer
	case errors.Is(err, jwt.InvalidAudienceError()):
		return ErrAudience
	case errors.Is(err, jwt.ValidateError()):
		return fmt.Errorf("%w: %w", ErrClaims, err)
	case errors.Is(err, jws.VerifyError()):
		return ErrSignature
	default:
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
}

// knownRoles are the roles a token can grant; anything else is ignored.
var knownRoles = []string{"operator", "admin"}

func roles(tok jwt.Token) []string {
	var out []string
	var list []any
	if tok.Get("roles", &list) == nil {
		for _, r := range list {
			if s, ok := r.(string); ok && slices.Contains(knownRoles, s) && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	var scope string
	if tok.Get("scope", &scope) == nil {
		for s := range strings.FieldsSeq(scope) {
			if slices.Contains(knownRoles, s) && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

// validSubject keeps subjects fit for Redis keys, audit rows and logs.
func validSubject(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := range len(s) {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
