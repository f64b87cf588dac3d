package security_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/security"
	"github.com/goodgo/goodgo/platform/token"
)

func devSecurity(p config.DevPaths, service string) config.Security {
	return config.Security{
		TLS:    mtls.Files{Cert: p.Cert(service), Key: p.Key(service), CA: p.CA()},
		Tokens: token.Config{Issuer: config.DevIssuer, Audience: config.DevAudience, JWKSFile: p.JWKS()},
	}
}

func TestOpenChecksTheCertificateIsTheBinarys(t *testing.T) {
	p := config.DevPaths{Dir: t.TempDir()}
	require.NoError(t, security.InitDev(p, security.Services, nil))

	k, err := security.Open(context.Background(), devSecurity(p, "payment"), "payment", nil)
	require.NoError(t, err)
	defer k.Close(context.Background())
	require.Equal(t, "payment", k.TLS.Service())
	require.NotNil(t, k.Tokens)

	wrong := devSecurity(p, "order")
	_, err = security.Open(context.Background(), wrong, "payment", nil)
	require.ErrorContains(t, err, "is the certificate of spiffe://goodgo/order, not of spiffe://goodgo/payment")

	relay := devSecurity(p, "outbox-relay")
	relay.Tokens = token.Config{}
	k, err = security.Open(context.Background(), relay, "outbox-relay", nil)
	require.NoError(t, err)
	require.Nil(t, k.Tokens, "a binary without users verifies no tokens")
}

func TestSecureFillsTheServerConfigAndDevModeServesReflection(t *testing.T) {
	p := config.DevPaths{Dir: t.TempDir()}
	require.NoError(t, security.InitDev(p, []string{"order"}, nil))
	for _, dev := range []bool{false, true} {
		cfg := devSecurity(p, "order")
		cfg.Dev = dev
		var logs bytes.Buffer
		k, err := security.Open(context.Background(), cfg, "order", slog.New(slog.NewJSONHandler(&logs, nil)))
		require.NoError(t, err)
		srv, err := k.Secure(grpcserver.Config{Addr: "127.0.0.1:0"}, nil, nil, prometheus.NewRegistry(), nil)
		require.NoError(t, err)
		k.Close(context.Background())
		require.Equal(t, "127.0.0.1:0", srv.Addr, "the rest of the config is kept")
		require.NotNil(t, srv.Credentials)
		require.NotNil(t, srv.Authorizer)
		require.Equal(t, dev, srv.Reflection, "reflection in development mode only")
		require.Equal(t, dev, strings.Contains(logs.String(), "development mode"), "development mode says so")
	}
}

func TestDevIssuerMintsWhatTheBinariesAccept(t *testing.T) {
	p := config.DevPaths{Dir: t.TempDir()}
	require.NoError(t, security.InitDev(p, []string{"order"}, []string{"order.goodgo.svc.cluster.local"}))
	iss, err := security.DevIssuer(p)
	require.NoError(t, err)
	tok, err := iss.Mint("alice", []string{"operator"}, time.Minute)
	require.NoError(t, err)
	k, err := security.Open(context.Background(), devSecurity(p, "order"), "order", nil)
	require.NoError(t, err)
	defer k.Close(context.Background())
	claims, err := k.Tokens.Verify(context.Background(), tok)
	require.NoError(t, err)
	require.Equal(t, "alice", claims.Subject)
	_, leaf := k.TLS.Certificate()
	require.Contains(t, leaf.DNSNames, "order.goodgo.svc.cluster.local")
}
