package tlsfiles_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/tlsfiles"
)

func TestErrorsNameTheSetting(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.crt")
	require.NoError(t, os.WriteFile(notPEM, []byte("hello"), 0o600))
	err := tlsfiles.Apply(&tls.Config{}, tlsfiles.Files{
		CAFile: notPEM, CAVar: "X_CA_FILE",
		CertFile: filepath.Join(dir, "missing.crt"), KeyFile: filepath.Join(dir, "missing.key"), CertVars: "X_CERT_FILE, X_KEY_FILE",
	})
	require.ErrorContains(t, err, "X_CA_FILE: "+notPEM+" holds no PEM certificate")
	require.ErrorContains(t, err, "X_CERT_FILE, X_KEY_FILE: open ")

	c := &tls.Config{}
	require.NoError(t, tlsfiles.Apply(c, tlsfiles.Files{}))
	require.Nil(t, c.RootCAs, "no CA file: the system roots")
	require.Nil(t, c.GetClientCertificate, "no client certificate")
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
	c := &tls.Config{}
	require.NoError(t, tlsfiles.Apply(c, tlsfiles.Files{CertFile: certFile, KeyFile: keyFile, CertVars: "CERT, KEY"}))
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
