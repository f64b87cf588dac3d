package config

import (
	"path/filepath"
	"strings"
	"time"

	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/ratelimit"
	"github.com/goodgo/goodgo/platform/token"
)

// Modes of GOODGO_MODE.
const (
	// ModeProduction (the default) requires every credential to be
	// configured and serves no reflection.
	ModeProduction = "production"
	// ModeDevelopment takes the development PKI and token keys that
	// `goodgoctl dev init` writes under GOODGO_DEV_DIR when the variables
	// naming them are unset, and serves reflection for grpcurl. It is
	// refused inside Kubernetes (KUBERNETES_SERVICE_HOST set).
	ModeDevelopment = "development"
)

// DefaultDevDir is where `goodgoctl dev init` writes the development
// credentials, relative to the working directory (the repository root).
const DefaultDevDir = ".dev"

// loadMode reads GOODGO_MODE and refuses development mode where it does not
// belong.
func loadMode(e *Env) bool {
	dev := e.OneOf("GOODGO_MODE", ModeProduction, ModeProduction, ModeDevelopment) == ModeDevelopment
	if _, inCluster := e.raw("KUBERNETES_SERVICE_HOST"); dev && inCluster {
		e.Invalid("GOODGO_MODE", "development mode is refused inside Kubernetes; configure real credentials")
	}
	return dev
}

// DevPaths are the files of the development credentials under a directory,
// as `goodgoctl dev init` writes them.
type DevPaths struct{ Dir string }

// CA is the development CA's certificate.
func (p DevPaths) CA() string { return filepath.Join(p.Dir, "pki", "ca.crt") }

// CAKey is the development CA's private key.
func (p DevPaths) CAKey() string { return filepath.Join(p.Dir, "pki", "ca.key") }

// Cert is service's certificate.
func (p DevPaths) Cert(service string) string { return filepath.Join(p.Dir, "pki", service+".crt") }

// Key is service's private key.
func (p DevPaths) Key(service string) string { return filepath.Join(p.Dir, "pki", service+".key") }

// JWKS is the development token issuer's public key set.
func (p DevPaths) JWKS() string { return filepath.Join(p.Dir, "jwt", "jwks.json") }

// IssuerKey is the development token issuer's private key.
func (p DevPaths) IssuerKey() string { return filepath.Join(p.Dir, "jwt", "issuer.jwk") }

// The development token issuer's claims.
const (
	DevIssuer   = "goodgo-dev"
	DevAudience = "goodgo"
)

// Security is how a binary proves who it is and checks who calls it.
type Security struct {
	// TLS is the binary's certificate, key and trusted CA (TLS_CERT_FILE,
	// TLS_KEY_FILE, TLS_CA_FILE; cert-manager's tls.crt, tls.key, ca.crt).
	TLS mtls.Files
	// Tokens verifies end users' bearer tokens (AUTH_ISSUER,
	// AUTH_AUDIENCE, and AUTH_JWKS_FILE or AUTH_JWKS_URL).
	Tokens token.Config
	// Dev is development mode (GOODGO_MODE=development): the binary serves
	// reflection and says once that it runs with development credentials.
	Dev bool
}

// LoadSecurity reads the credentials of service. In development mode unset
// variables name the files of `goodgoctl dev init` under GOODGO_DEV_DIR
// (default .dev); otherwise every one is required. withTokens is false for
// a binary that accepts no end users' calls (the outbox relay).
func LoadSecurity(e *Env, service string, dev, withTokens bool) Security {
	paths := DevPaths{Dir: e.String("GOODGO_DEV_DIR", DefaultDevDir)}
	pick := func(name, def string) string {
		if dev {
			return e.String(name, def)
		}
		return e.Required(name)
	}
	s := Security{Dev: dev, TLS: mtls.Files{
		Cert: pick("TLS_CERT_FILE", paths.Cert(service)),
		Key:  pick("TLS_KEY_FILE", paths.Key(service)),
		CA:   pick("TLS_CA_FILE", paths.CA()),
	}}
	if !withTokens {
		return s
	}
	s.Tokens.Issuer = pick("AUTH_ISSUER", DevIssuer)
	s.Tokens.Audience = pick("AUTH_AUDIENCE", DevAudience)
	if _, set := e.raw("AUTH_JWKS_URL"); set {
		s.Tokens.JWKSURL = e.URL("AUTH_JWKS_URL", "", "https")
	}
	s.Tokens.JWKSFile = e.String("AUTH_JWKS_FILE", "")
	switch {
	case s.Tokens.JWKSURL != "" && s.Tokens.JWKSFile != "":
		e.Invalid("AUTH_JWKS_URL", "set either AUTH_JWKS_URL or AUTH_JWKS_FILE, not both")
	case s.Tokens.JWKSURL == "" && s.Tokens.JWKSFile == "" && dev:
		s.Tokens.JWKSFile = paths.JWKS()
	case s.Tokens.JWKSURL == "" && s.Tokens.JWKSFile == "":
		e.Invalid("AUTH_JWKS_URL", "required (or AUTH_JWKS_FILE): the keys of the token issuer")
	}
	s.Tokens.Leeway = e.Duration("AUTH_LEEWAY", 30*time.Second)
	return s
}

// RateLimits reads the per-user rate limits of each class: RATE_LIMIT_READ
// (default 50/s), RATE_LIMIT_WRITE (10/s) and RATE_LIMIT_UPDATE (2/s), each
// "N/s", "N/m", "N/h", or 0 for none.
func RateLimits(e *Env) map[ratelimit.Class]ratelimit.Limit {
	defaults := map[ratelimit.Class]string{ratelimit.Read: "50/s", ratelimit.Write: "10/s", ratelimit.Update: "2/s"}
	out := map[ratelimit.Class]ratelimit.Limit{}
	for _, c := range ratelimit.Classes {
		name := "RATE_LIMIT_" + strings.ToUpper(string(c))
		v := e.String(name, defaults[c])
		l, err := ratelimit.ParseLimit(v)
		if err != nil {
			e.invalid(name, v, err.Error())
			l, _ = ratelimit.ParseLimit(defaults[c])
		}
		out[c] = l
	}
	return out
}
