package mtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/goodgo/goodgo/platform/mtls"
)

// reached is the status the test server answers every call with, so that
// a client can tell a call that got through the handshake.
const reached = codes.FailedPrecondition

// startServer serves src's server credentials on 127.0.0.1 and returns its
// address and the AuthInfo of every call it receives.
func startServer(t *testing.T, src *mtls.Source) (string, <-chan mtls.AuthInfo) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	seen := make(chan mtls.AuthInfo, 16)
	srv := grpc.NewServer(
		grpc.Creds(src.ServerCredentials()),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			ai, ok := mtls.PeerFrom(stream.Context())
			if !ok {
				return status.Error(codes.Internal, "no mtls.AuthInfo")
			}
			select {
			case seen <- ai:
			default: // a test that makes many calls reads none of them
			}
			return status.Error(reached, "reached the handler")
		}),
	)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), seen
}

// call makes one call over creds and returns its error and the client's
// view of the server.
func call(t *testing.T, addr string, creds credentials.TransportCredentials) (*peer.Peer, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var p peer.Peer
	err = conn.Invoke(ctx, "/test.v1.Echo/Call", &emptypb.Empty{}, &emptypb.Empty{}, grpc.Peer(&p))
	return &p, err
}

func receive(t *testing.T, seen <-chan mtls.AuthInfo) mtls.AuthInfo {
	t.Helper()
	select {
	case ai := <-seen:
		return ai
	case <-time.After(5 * time.Second):
		require.FailNow(t, "the server saw no call")
		return mtls.AuthInfo{}
	}
}

func roots(ca *mtls.CA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

func keyPair(t *testing.T, is mtls.Issued) tls.Certificate {
	t.Helper()
	c, err := tls.X509KeyPair(is.CertPEM, is.KeyPEM)
	require.NoError(t, err)
	return c
}

func TestServerCredentialsClientWithoutCertificate(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	addr, seen := startServer(t, loadService(t, ca, "payment", "127.0.0.1"))

	// An end user's client: verifies the server by host name, presents
	// nothing.
	p, err := call(t, addr, credentials.NewTLS(&tls.Config{RootCAs: roots(ca), MinVersion: tls.VersionTLS12}))
	require.Equal(t, reached, status.Code(err), "%v", err)
	ai := receive(t, seen)
	require.Empty(t, ai.Service)
	require.NoError(t, ai.CertErr)
	require.Empty(t, ai.State.PeerCertificates)
	require.Equal(t, uint16(tls.VersionTLS13), ai.State.Version)

	server := p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0]
	require.Equal(t, mtls.ID("payment"), server.URIs[0].String())
}

func TestServerCredentialsClientOfOurCA(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	addr, seen := startServer(t, loadService(t, ca, "payment"))

	orchestrator := loadService(t, ca, "orchestrator")
	_, err := call(t, addr, orchestrator.ClientCredentials("payment"))
	require.Equal(t, reached, status.Code(err), "%v", err)
	ai := receive(t, seen)
	require.NoError(t, ai.CertErr)
	require.Equal(t, "orchestrator", ai.Service)
	require.Len(t, ai.State.PeerCertificates, 1)
}

func TestServerCredentialsClientOfAnotherCA(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	other := newCA(t, "other CA")
	addr, seen := startServer(t, loadService(t, ca, "payment", "127.0.0.1"))

	// The stranger claims to be the orchestrator; the handshake succeeds
	// so that the call can be refused with a precise status.
	_, err := call(t, addr, credentials.NewTLS(&tls.Config{
		RootCAs:      roots(ca),
		Certificates: []tls.Certificate{keyPair(t, issue(t, other, "orchestrator"))},
	}))
	require.Equal(t, reached, status.Code(err), "%v", err)
	ai := receive(t, seen)
	require.Empty(t, ai.Service, "an untrusted certificate names no service")
	require.ErrorContains(t, ai.CertErr, "certificate not trusted")
	require.Len(t, ai.State.PeerCertificates, 1, "TLS still proved possession of the key")
}

func TestServerCredentialsClientCertificateWithoutClientAuth(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	addr, seen := startServer(t, loadService(t, ca, "payment", "127.0.0.1"))

	serverOnly, _ := customCert(t, ca, "orchestrator", func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	})
	_, err := call(t, addr, credentials.NewTLS(&tls.Config{
		RootCAs:      roots(ca),
		Certificates: []tls.Certificate{keyPair(t, serverOnly)},
	}))
	require.Equal(t, reached, status.Code(err), "%v", err)
	ai := receive(t, seen)
	require.Empty(t, ai.Service)
	require.ErrorContains(t, ai.CertErr, "not issued for this use")
}

func TestServerCredentialsRefuseTLS12(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	addr, seen := startServer(t, loadService(t, ca, "payment", "127.0.0.1"))

	_, err := call(t, addr, credentials.NewTLS(&tls.Config{RootCAs: roots(ca), MaxVersion: tls.VersionTLS12}))
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
	require.Empty(t, seen)
}

func TestClientCredentials(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	other := newCA(t, "other CA")
	orchestrator := loadService(t, ca, "orchestrator")

	t.Run("the service meant", func(t *testing.T) {
		addr, seen := startServer(t, loadService(t, ca, "payment"))
		p, err := call(t, addr, orchestrator.ClientCredentials("payment"))
		require.Equal(t, reached, status.Code(err), "%v", err)
		require.Equal(t, "orchestrator", receive(t, seen).Service)
		require.Equal(t, mtls.ID("payment"), p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].URIs[0].String())
	})
	t.Run("another service", func(t *testing.T) {
		addr, seen := startServer(t, loadService(t, ca, "payment"))
		_, err := call(t, addr, orchestrator.ClientCredentials("inventory"))
		require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
		require.ErrorContains(t, err, "server is spiffe://goodgo/payment, want spiffe://goodgo/inventory")
		require.Empty(t, seen, "no call reached the wrong server")
	})
	t.Run("a server of another CA", func(t *testing.T) {
		addr, seen := startServer(t, loadService(t, other, "payment"))
		_, err := call(t, addr, orchestrator.ClientCredentials("payment"))
		require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
		require.ErrorContains(t, err, "certificate not trusted")
		require.Empty(t, seen)
	})
	t.Run("a server certificate without server usage", func(t *testing.T) {
		clientOnly, _ := customCert(t, ca, "payment", func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		})
		addr, seen := startServer(t, load(t, writeIdentity(t, t.TempDir(), clientOnly, ca.PEM), nil))
		_, err := call(t, addr, orchestrator.ClientCredentials("payment"))
		require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
		require.ErrorContains(t, err, "not issued for this use")
		require.Empty(t, seen)
	})
}

// The server presents the certificate it reloaded, on new connections.
func TestServerCredentialsServeReloadedCertificate(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	files := writeIdentity(t, t.TempDir(), issue(t, ca, "payment"), ca.PEM)
	src := load(t, files, nil)
	addr, _ := startServer(t, src)
	orchestrator := loadService(t, ca, "orchestrator")

	renewed := issue(t, ca, "payment")
	want := parseCert(t, renewed.CertPEM).SerialNumber
	require.NoError(t, renewed.WriteFiles(files.Cert, files.Key))
	require.Eventually(t, func() bool {
		p, err := call(t, addr, orchestrator.ClientCredentials("payment"))
		if status.Code(err) != reached {
			return false
		}
		return p.AuthInfo.(credentials.TLSInfo).State.PeerCertificates[0].SerialNumber.Cmp(want) == 0
	}, 10*time.Second, 50*time.Millisecond)
}

func TestPeerFrom(t *testing.T) {
	t.Parallel()
	_, ok := mtls.PeerFrom(context.Background())
	require.False(t, ok, "no peer")

	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{}})
	_, ok = mtls.PeerFrom(ctx)
	require.False(t, ok, "a peer of other credentials")

	ctx = peer.NewContext(context.Background(), &peer.Peer{AuthInfo: mtls.AuthInfo{Service: "order"}})
	ai, ok := mtls.PeerFrom(ctx)
	require.True(t, ok)
	require.Equal(t, "order", ai.Service)
}

func TestServerCredentialsClone(t *testing.T) {
	t.Parallel()
	ca := newCA(t, "test CA")
	src := loadService(t, ca, "payment")
	creds := src.ServerCredentials().Clone()
	// The clone still turns handshakes into mtls.AuthInfo.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	seen := make(chan mtls.AuthInfo, 1)
	srv := grpc.NewServer(grpc.Creds(creds), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		ai, ok := mtls.PeerFrom(stream.Context())
		if ok {
			seen <- ai
		}
		return status.Error(reached, "reached")
	}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	_, err = call(t, lis.Addr().String(), loadService(t, ca, "order").ClientCredentials("payment"))
	require.Equal(t, reached, status.Code(err), "%v", err)
	require.Equal(t, "order", receive(t, seen).Service)
}
