package token

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// Issuer mints bearer tokens: the development identity provider of
// `goodgoctl dev token` and of the tests. Production tokens come from a
// real identity provider whose JWKS the services are configured with.
type Issuer struct {
	// Name is the "iss" claim, Audience the "aud" claim of minted tokens.
	Name, Audience string
	key            jwk.Key
}

// NewIssuer creates an issuer with a fresh ES256 key whose key id is kid.
func NewIssuer(name, audience, kid string) (*Issuer, error) {
	raw, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("token: key: %w", err)
	}
	key, err := jwk.Import(raw)
	if err != nil {
		return nil, fmt.Errorf("token: key: %w", err)
	}
	if err := key.Set(jwk.KeyIDKey, kid); err != nil {
		return nil, fmt.Errorf("token: key id: %w", err)
	}
	if err := key.Set(jwk.AlgorithmKey, jwa.ES256()); err != nil {
		return nil, fmt.Errorf("token: key alg: %w", err)
	}
	return &Issuer{Name: name, Audience: audience, key: key}, nil
}

// LoadIssuer reads an issuer's private key from keyFile, a JWK as
// PrivateJWK wrote it.
func LoadIssuer(name, audience, keyFile string) (*Issuer, error) {
	raw, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	key, err := jwk.ParseKey(raw)
	if err != nil {
		return nil, fmt.Errorf("token: %s: %w", keyFile, err)
	}
	return &Issuer{Name: name, Audience: audience, key: key}, nil
}

// PrivateJWK is the issuer's private key as a JWK, to keep in a file
// readable by its owner only.
func (i *Issuer) PrivateJWK() ([]byte, error) {
	b, err := json.MarshalIndent(i.key, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("token: encode key: %w", err)
	}
	return b, nil
}

// PublicJWKS is the key set services verify the issuer's tokens with.
func (i *Issuer) PublicJWKS() ([]byte, error) {
	pub, err := i.key.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("token: public key: %w", err)
	}
	set := jwk.NewSet()
	if err := set.AddKey(pub); err != nil {
		return nil, fmt.Errorf("token: key set: %w", err)
	}
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("token: encode key set: %w", err)
	}
	return b, nil
}

// Mint returns a token for subject granting roles, valid from now for ttl
// (a negative ttl mints an expired token, for tests).
func (i *Issuer) Mint(subject string, roles []string, ttl time.Duration) (string, error) {
	return i.MintFor(i.Audience, subject, roles, ttl)
}

// MintFor is Mint with another audience, for tests of a wrong audience.
func (i *Issuer) MintFor(audience, subject string, roles []string, ttl time.Duration) (string, error) {
	now := time.Now()
	b := jwt.NewBuilder().Issuer(i.Name).Audience([]string{audience}).Subject(subject).
		IssuedAt(now).Expiration(now.Add(ttl))
	if ttl < 0 {
		b = b.IssuedAt(now.Add(2 * ttl))
	}
	if len(roles) > 0 {
		b = b.Claim("roles", roles)
	}
	tok, err := b.Build()
	if err != nil {
		return "", fmt.Errorf("token: build: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.ES256(), i.key))
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return string(signed), nil
}
