// Package mtlstest makes certificates for the TLS tests of a Kafka broker
// and its clients. Only tests import it.
package mtlstest

import (
	"crypto/tls"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/mtls"
)

// BrokerPKI is a CA, a Kafka broker's certificate for 127.0.0.1 and the
// files of a client certificate, for the TLS tests of a broker and its
// clients.
type BrokerPKI struct {
	CA *mtls.CA
	// CAFile holds the CA's certificate.
	CAFile string
	// Server is the broker's certificate.
	Server tls.Certificate
	// ClientCert and ClientKey hold outbox-relay's client certificate.
	ClientCert, ClientKey string
}

// NewBrokerPKI makes a BrokerPKI under a new CA called name, its files in
// a temporary directory.
func NewBrokerPKI(tb testing.TB, name string) BrokerPKI {
	tb.Helper()
	dir := tb.TempDir()
	ca, err := mtls.NewCA(name, time.Hour)
	require.NoError(tb, err)
	p := BrokerPKI{CA: ca, CAFile: filepath.Join(dir, "ca.crt")}
	require.NoError(tb, mtls.WriteFileAtomic(p.CAFile, ca.PEM, 0o644))
	srv, err := ca.Issue("kafka", []string{"127.0.0.1"}, time.Hour)
	require.NoError(tb, err)
	p.Server, err = tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	require.NoError(tb, err)
	cli, err := ca.Issue("outbox-relay", nil, time.Hour)
	require.NoError(tb, err)
	p.ClientCert, p.ClientKey = filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	require.NoError(tb, cli.WriteFiles(p.ClientCert, p.ClientKey))
	return p
}
