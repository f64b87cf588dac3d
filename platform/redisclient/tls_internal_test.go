package redisclient

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/mtls"
)

func TestTLSConfig(t *testing.T) {
	t.Parallel()
	base := &tls.Config{ServerName: "redis.example", MinVersion: tls.VersionTLS10}

	c, err := tlsConfig(base, config.Redis{}, false)
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS12), c.MinVersion, "TLS 1.2 at least")
	require.Equal(t, "redis.example", c.ServerName)
	require.Equal(t, uint16(tls.VersionTLS10), base.MinVersion, "the parsed config is not changed")

	c, err = tlsConfig(base, config.Redis{}, true)
	require.NoError(t, err)
	require.Empty(t, c.ServerName, "a cluster client checks each node by the address it dials")

	c, err = tlsConfig(base, config.Redis{ServerName: "redis.internal"}, true)
	require.NoError(t, err)
	require.Equal(t, "redis.internal", c.ServerName)

	c, err = tlsConfig(nil, config.Redis{}, false)
	require.NoError(t, err)
	require.Nil(t, c, "redis:// stays plaintext")
	_, err = tlsConfig(nil, config.Redis{CAFile: "ca.crt"}, true)
	require.ErrorContains(t, err, "TLS settings need a rediss:// REDIS_URL", "not silently plaintext")
}

func TestClientCertificateIsReloadedWhenRenewed(t *testing.T) {
	t.Parallel()
	ca, err := mtls.NewCA("test CA", time.Hour)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	issue := func() []byte {
		issued, err := ca.Issue("order", nil, time.Hour)
		require.NoError(t, err)
		require.NoError(t, issued.WriteFiles(certFile, keyFile))
		return issued.CertPEM
	}
	leaf := func(c *tls.Config) []byte {
		cert, err := c.GetClientCertificate(&tls.CertificateRequestInfo{})
		require.NoError(t, err)
		return cert.Certificate[0]
	}
	issue()
	c, err := tlsConfig(&tls.Config{}, config.Redis{CertFile: certFile, KeyFile: keyFile}, false)
	require.NoError(t, err)
	first := leaf(c)
	require.Equal(t, first, leaf(c), "unchanged files, same certificate")

	// A renewal: both files rewritten (modification times move on).
	future := time.Now().Add(time.Minute)
	issue()
	require.NoError(t, os.Chtimes(certFile, future, future))
	require.NoError(t, os.Chtimes(keyFile, future, future))
	renewed := leaf(c)
	require.NotEqual(t, first, renewed)

	// Half a renewal (a certificate without its key) keeps the last pair.
	other, err := ca.Issue("order", nil, time.Hour)
	require.NoError(t, err)
	require.NoError(t, mtls.WriteFileAtomic(certFile, other.CertPEM, 0o600))
	later := future.Add(time.Minute)
	require.NoError(t, os.Chtimes(certFile, later, later))
	require.Equal(t, renewed, leaf(c))
}
