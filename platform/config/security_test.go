package config_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/ratelimit"
)

func TestLoadSecurity(t *testing.T) {
	t.Run("production names every missing credential", func(t *testing.T) {
		e := envOf(nil)
		config.LoadSecurity(e, "order", false, true)
		err := e.Err()
		require.Error(t, err)
		for _, want := range []string{"TLS_CERT_FILE: required", "TLS_KEY_FILE: required", "TLS_CA_FILE: required",
			"AUTH_ISSUER: required", "AUTH_AUDIENCE: required", "AUTH_JWKS_URL: required (or AUTH_JWKS_FILE)"} {
			require.Contains(t, err.Error(), want)
		}
	})
	t.Run("a binary without users needs no token settings", func(t *testing.T) {
		e := envOf(map[string]string{"TLS_CERT_FILE": "/t/tls.crt", "TLS_KEY_FILE": "/t/tls.key", "TLS_CA_FILE": "/t/ca.crt"})
		s := config.LoadSecurity(e, "outbox-relay", false, false)
		require.NoError(t, e.Err())
		require.Equal(t, "/t/tls.key", s.TLS.Key)
		require.Empty(t, s.Tokens.Issuer)
	})
	t.Run("development mode defaults to the files of goodgoctl dev init", func(t *testing.T) {
		e := envOf(map[string]string{"GOODGO_DEV_DIR": "/creds"})
		s := config.LoadSecurity(e, "payment", true, true)
		require.NoError(t, e.Err())
		require.Equal(t, "/creds/pki/payment.crt", s.TLS.Cert)
		require.Equal(t, "/creds/pki/payment.key", s.TLS.Key)
		require.Equal(t, "/creds/pki/ca.crt", s.TLS.CA)
		require.Equal(t, "/creds/jwt/jwks.json", s.Tokens.JWKSFile)
		require.Equal(t, config.DevIssuer, s.Tokens.Issuer)
		require.Equal(t, config.DevAudience, s.Tokens.Audience)
		require.Equal(t, 30*time.Second, s.Tokens.Leeway)
	})
	t.Run("a JWKS URL must be https, and not beside a file", func(t *testing.T) {
		e := envOf(map[string]string{"AUTH_JWKS_URL": "http://idp/keys"})
		config.LoadSecurity(e, "order", true, true)
		require.ErrorContains(t, e.Err(), "AUTH_JWKS_URL")
		e = envOf(map[string]string{"AUTH_JWKS_URL": "https://idp/keys", "AUTH_JWKS_FILE": "/k.json"})
		config.LoadSecurity(e, "order", true, true)
		require.ErrorContains(t, e.Err(), "AUTH_JWKS_URL: set either AUTH_JWKS_URL or AUTH_JWKS_FILE, not both")
		e = envOf(map[string]string{"AUTH_JWKS_URL": "https://idp/keys"})
		s := config.LoadSecurity(e, "order", true, true)
		require.NoError(t, e.Err())
		require.Equal(t, "https://idp/keys", s.Tokens.JWKSURL)
		require.Empty(t, s.Tokens.JWKSFile, "development mode does not add the file beside a URL")
	})
	t.Run("GOODGO_MODE is development or production, development never in Kubernetes", func(t *testing.T) {
		e := envOf(map[string]string{"GOODGO_MODE": "dev"})
		config.LoadCommon(e, "order", "127.0.0.1:1", "127.0.0.1:2")
		require.ErrorContains(t, e.Err(), "GOODGO_MODE: must be one of production, development")
		e = envOf(map[string]string{"GOODGO_MODE": "development", "KUBERNETES_SERVICE_HOST": "10.0.0.1"})
		config.LoadCommon(e, "order", "127.0.0.1:1", "127.0.0.1:2")
		require.ErrorContains(t, e.Err(), "GOODGO_MODE: development mode is refused inside Kubernetes")
		e = envOf(map[string]string{"KUBERNETES_SERVICE_HOST": "10.0.0.1"})
		c := config.LoadCommon(e, "order", "127.0.0.1:1", "127.0.0.1:2")
		require.NoError(t, e.Err())
		require.False(t, c.Dev, "production is the default")
	})
}

func TestRateLimits(t *testing.T) {
	e := envOf(nil)
	got := config.RateLimits(e)
	require.NoError(t, e.Err())
	require.Equal(t, map[ratelimit.Class]ratelimit.Limit{
		ratelimit.Read:   {Count: 50, Period: time.Second},
		ratelimit.Write:  {Count: 10, Period: time.Second},
		ratelimit.Update: {Count: 2, Period: time.Second},
	}, got)

	e = envOf(map[string]string{"RATE_LIMIT_READ": "0", "RATE_LIMIT_WRITE": "600/m", "RATE_LIMIT_UPDATE": "fast"})
	got = config.RateLimits(e)
	require.ErrorContains(t, e.Err(), `RATE_LIMIT_UPDATE: "fast" is not N/s, N/m or N/h`)
	require.Equal(t, ratelimit.Limit{}, got[ratelimit.Read], "0 is unlimited")
	require.Equal(t, ratelimit.Limit{Count: 600, Period: time.Minute}, got[ratelimit.Write])
}
