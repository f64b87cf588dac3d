package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// AuthInfo is what a server learns of a connection's peer: the TLS state
// and, when the peer presented a certificate, the service it proves (or why
// it proves nothing).
type AuthInfo struct {
	credentials.TLSInfo
	// Service is the verified peer's service name; empty when the peer
	// presented no certificate or CertErr is set.
	Service string
	// CertErr is why a presented certificate was not accepted.
	CertErr error
}

// PeerFrom returns the AuthInfo of the call whose server context is ctx.
func PeerFrom(ctx context.Context) (AuthInfo, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return AuthInfo{}, false
	}
	ai, ok := p.AuthInfo.(AuthInfo)
	return ai, ok
}

// ServerCredentials are the transport credentials of a gRPC server: TLS 1.3
// with the current certificate, asking clients for a certificate without
// requiring one. A certificate a client presents is verified against the
// current CA once, at the handshake, and the outcome put in the
// connection's AuthInfo; a handshake never fails for a bad client
// certificate, so that the call can be refused with a precise
// Unauthenticated status (and counted) instead of a bare connection error.
// TLS itself still proves that the client holds the certificate's key.
func (s *Source) ServerCredentials() credentials.TransportCredentials {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.current().cert, nil
		},
	}
	return &serverCreds{TransportCredentials: credentials.NewTLS(cfg), src: s}
}

type serverCreds struct {
	credentials.TransportCredentials
	src *Source
}

func (c *serverCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, ai, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		return out, ai, err
	}
	info, ok := ai.(credentials.TLSInfo)
	if !ok {
		return out, ai, fmt.Errorf("mtls: unexpected auth info %T", ai)
	}
	res := AuthInfo{TLSInfo: info}
	if chain := info.State.PeerCertificates; len(chain) > 0 {
		res.Service, res.CertErr = c.src.VerifyChain(chain, x509.ExtKeyUsageClientAuth)
	}
	return out, res, nil
}

func (c *serverCreds) Clone() credentials.TransportCredentials {
	return &serverCreds{TransportCredentials: c.TransportCredentials.Clone(), src: c.src}
}

// ClientCredentials are the transport credentials for calling service:
// TLS 1.3 presenting this binary's current certificate, and accepting only a
// server whose certificate the current CA signed and whose SPIFFE ID names
// service. Host names are not checked: the SPIFFE ID is the identity.
func (s *Source) ClientCredentials(service string) credentials.TransportCredentials {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.current().cert, nil
		},
		// The standard verification checks a host name; VerifyConnection
		// below does the verification that matters here instead: the chain
		// against the current CA, and the SPIFFE ID.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			got, err := s.VerifyChain(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
			if err != nil {
				return fmt.Errorf("mtls: server certificate: %w", err)
			}
			if got != service {
				return fmt.Errorf("mtls: server is %s, want %s", ID(got), ID(service))
			}
			return nil
		},
	}
	return credentials.NewTLS(cfg)
}
