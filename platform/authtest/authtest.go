// Package authtest gives tests real credentials: a development PKI and
// token issuer in a temporary directory (the files `goodgoctl dev init`
// writes), the environment a binary reads them from, and clients that call
// as an end user, as a service, or with nothing. Only tests import it.
package authtest

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/security"
	"github.com/goodgo/goodgo/platform/token"
)

// PKI is a CA with a certificate for each GoodGo binary (and any other
// services asked for), and a token issuer.
type PKI struct {
	t      testing.TB
	Paths  config.DevPaths
	Issuer *token.Issuer
	roots  *x509.CertPool
	// keys are the secret keys of the binaries' production environment
	// (Env), by variable; the PII keys are per service.
	keys map[string]string
}

// New writes a fresh PKI into a temporary directory, with certificates for
// the GoodGo binaries and for extra services.
func New(t testing.TB, extra ...string) *PKI {
	t.Helper()
	p := config.DevPaths{Dir: t.TempDir()}
	require.NoError(t, security.InitDev(p, append(append([]string{}, security.Services...), extra...), nil))
	iss, err := security.DevIssuer(p)
	require.NoError(t, err)
	pem, err := os.ReadFile(p.CA())
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))
	keys := map[string]string{
		config.OutboxKeys.Keys:       "outbox-1:" + randomKey(t),
		config.SagaContextKeys.Keys:  "saga-1:" + randomKey(t),
		config.VersionTokenKeys.Keys: "tokens-1:" + randomKey(t),
	}
	for _, s := range security.Services {
		keys[s+"/"+config.PIIKeys.Keys] = "pii-1:" + randomKey(t)
	}
	return &PKI{t: t, Paths: p, Issuer: iss, roots: roots, keys: keys}
}

func randomKey(t testing.TB) string {
	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(key)
}

// Keyring is the keyring of Key(service, purpose).
func (p *PKI) Keyring(service string, purpose config.Purpose) *keyring.Keyring {
	p.t.Helper()
	kid, key, _ := strings.Cut(p.Key(service, purpose), ":")
	raw, err := base64.StdEncoding.DecodeString(key)
	require.NoError(p.t, err)
	kr, err := keyring.New(kid, map[string][]byte{kid: raw})
	require.NoError(p.t, err)
	return kr
}

// Key returns the key set (kid:base64key) that Env gives service for
// purpose p.
func (p *PKI) Key(service string, purpose config.Purpose) string {
	if purpose == config.PIIKeys {
		return p.keys[service+"/"+purpose.Keys]
	}
	return p.keys[purpose.Keys]
}

// Env is the environment of a binary run as service with this PKI, in
// production mode: every credential named explicitly, and fresh secret
// keys (the outbox, saga context and version-token keys shared by every
// binary, the PII keys its own).
func (p *PKI) Env(service string) map[string]string {
	return map[string]string{
		"TLS_CERT_FILE":  p.Paths.Cert(service),
		"TLS_KEY_FILE":   p.Paths.Key(service),
		"TLS_CA_FILE":    p.Paths.CA(),
		"AUTH_ISSUER":    config.DevIssuer,
		"AUTH_AUDIENCE":  config.DevAudience,
		"AUTH_JWKS_FILE": p.Paths.JWKS(),

		config.OutboxKeys.Keys:       p.Key(service, config.OutboxKeys),
		config.SagaContextKeys.Keys:  p.Key(service, config.SagaContextKeys),
		config.VersionTokenKeys.Keys: p.Key(service, config.VersionTokenKeys),
		config.PIIKeys.Keys:          p.Key(service, config.PIIKeys),
	}
}

// Security is the config.Security of service.
func (p *PKI) Security(service string) config.Security {
	return config.Security{
		TLS:    mtls.Files{Cert: p.Paths.Cert(service), Key: p.Paths.Key(service), CA: p.Paths.CA()},
		Tokens: token.Config{Issuer: config.DevIssuer, Audience: config.DevAudience, JWKSFile: p.Paths.JWKS()},
	}
}

// Kit opens service's security Kit.
func (p *PKI) Kit(service string) *security.Kit {
	p.t.Helper()
	k, err := security.Open(context.Background(), p.Security(service), service, nil)
	require.NoError(p.t, err)
	p.t.Cleanup(func() { k.Close(context.Background()) })
	return k
}

// Authorizer returns service's Authorizer of policies (no rate limits) on
// a fresh registry, and the Kit's server credentials.
func (p *PKI) Authorizer(service string, policies authz.Policies) (*authz.Authorizer, credentials.TransportCredentials) {
	p.t.Helper()
	cfg, err := p.Kit(service).Secure(grpcserver.Config{}, policies, nil, prometheus.NewRegistry(), nil)
	require.NoError(p.t, err)
	return cfg.Authorizer, cfg.Credentials
}

// Token mints a token for user with roles, valid for an hour.
func (p *PKI) Token(user string, roles ...string) string {
	p.t.Helper()
	tok, err := p.Issuer.Mint(user, roles, time.Hour)
	require.NoError(p.t, err)
	return tok
}

// Dial returns a connection to addr as an end user's client: TLS without a
// client certificate, no token (add one per call with AsUser, or to every
// call with grpc.WithPerRPCCredentials(grpcclient.Bearer(tok)) in opts).
func (p *PKI) Dial(addr string, opts ...grpc.DialOption) *grpc.ClientConn {
	p.t.Helper()
	conn, err := grpcclient.DialUser(addr, p.roots, opts...)
	require.NoError(p.t, err)
	p.t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// DialAs returns a connection to service at addr as the service as,
// presenting its certificate and signing assertions for delegated calls.
func (p *PKI) DialAs(as, service, addr string) *grpc.ClientConn {
	p.t.Helper()
	conn, err := p.Kit(as).Dial(addr, service)
	require.NoError(p.t, err)
	p.t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// AsUser returns ctx sending tok as the bearer token.
func AsUser(ctx context.Context, tok string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, authz.BearerMetadataKey, "Bearer "+tok)
}
