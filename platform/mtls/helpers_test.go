package mtls_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/servicetest"
)

func jsonLogger(w *servicetest.Logs) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// requireService checks the service a certificate names: the error
// wantErr and no service or, without wantErr, want.
func requireService(t *testing.T, got string, err error, want, wantErr string) {
	t.Helper()
	if wantErr != "" {
		require.ErrorContains(t, err, wantErr)
		require.Empty(t, got)
		return
	}
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func newCA(t *testing.T, name string) *mtls.CA {
	t.Helper()
	ca, err := mtls.NewCA(name, 24*time.Hour)
	require.NoError(t, err)
	return ca
}

func issue(t *testing.T, ca *mtls.CA, service string, hosts ...string) mtls.Issued {
	t.Helper()
	is, err := ca.Issue(service, hosts, time.Hour)
	require.NoError(t, err)
	return is
}

// writeIdentity writes issued and the CA bundle caPEM into dir and returns
// the Files naming them.
func writeIdentity(t *testing.T, dir string, issued mtls.Issued, caPEM []byte) mtls.Files {
	t.Helper()
	f := mtls.Files{
		Cert: filepath.Join(dir, "tls.crt"),
		Key:  filepath.Join(dir, "tls.key"),
		CA:   filepath.Join(dir, "ca.crt"),
	}
	require.NoError(t, mtls.WriteFileAtomic(f.CA, caPEM, 0o644))
	require.NoError(t, issued.WriteFiles(f.Cert, f.Key))
	return f
}

func load(t *testing.T, files mtls.Files, logger *slog.Logger) *mtls.Source {
	t.Helper()
	src, err := mtls.Load(files, logger)
	require.NoError(t, err)
	return src
}

// loadService issues a certificate for service from ca, writes it into a
// fresh directory and loads it.
func loadService(t *testing.T, ca *mtls.CA, service string, hosts ...string) *mtls.Source {
	t.Helper()
	return load(t, writeIdentity(t, t.TempDir(), issue(t, ca, service, hosts...), ca.PEM), nil)
}

func parseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	require.NotNil(t, b)
	c, err := x509.ParseCertificate(b.Bytes)
	require.NoError(t, err)
	return c
}

func caSigner(t *testing.T, ca *mtls.CA) crypto.Signer {
	t.Helper()
	kp, err := ca.KeyPEM()
	require.NoError(t, err)
	b, _ := pem.Decode(kp)
	require.NotNil(t, b)
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	require.NoError(t, err)
	s, ok := k.(crypto.Signer)
	require.True(t, ok)
	return s
}

// customCert issues, from ca, a certificate shaped by edit (which starts
// from a client-and-server certificate for spiffe://goodgo/<service>), for
// the identities mtls.CA.Issue cannot make.
func customCert(t *testing.T, ca *mtls.CA, service string, edit func(*x509.Certificate)) (mtls.Issued, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()),
		Subject:      pkix.Name{CommonName: service},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{mustURL(t, mtls.ID(service))},
	}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), caSigner(t, ca))
	require.NoError(t, err)
	c, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	require.NoError(t, err)
	return mtls.Issued{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}, c
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}
