// Package grpcclient dials GoodGo services the way every service should:
// over mutual TLS, checking that the server is the service meant (its
// SPIFFE ID), with OpenTelemetry tracing (so one trace spans the services),
// keepalives the servers accept, and — for a call whose context carries a
// caller.Delegation — a signed on-behalf-of assertion naming the user the
// caller acts for.
package grpcclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/token"
)

// Config names the service to dial and the caller's credentials.
type Config struct {
	// Target is a grpc.NewClient target: "dns:///payment:50052" or
	// "127.0.0.1:50052".
	Target string
	// Service is the service expected at Target: its certificate must
	// carry that service's SPIFFE ID.
	Service string
	// TLS is the caller's own identity, presented as client certificate.
	TLS *mtls.Source
	// Signer signs on-behalf-of assertions for calls whose context carries
	// a caller.Delegation; nil for a caller that never acts for users.
	Signer *token.Signer
}

// keepaliveParams ping an idle connection every 30 s: within the servers'
// enforcement (grpcserver.KeepaliveMinTime), and soon enough to notice a
// peer that vanished without closing the connection.
var keepaliveParams = keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, PermitWithoutStream: true}

// ConnectParams are the reconnect backoff of service-to-service
// connections: from 100 ms, growing 1.6 times (±20 %) to at most 1 s. With
// grpc-go's default (1 s growing to 120 s) a neighbour back after a 3 s
// restart was first reached about 5 s after it died, and a saga step could
// spend its retries on a neighbour that was already up again; with this
// cap a caller that keeps calling reaches it within about 1.2 s of its
// return. Each attempt may take MinConnectTimeout (TCP and TLS handshakes).
var ConnectParams = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// Dial returns a client connection per cfg, with opts appended. Like
// grpc.NewClient it does not connect until the first call. It reconnects
// with ConnectParams.
func Dial(cfg Config, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if cfg.Target == "" || cfg.Service == "" || cfg.TLS == nil {
		return nil, errors.New("grpcclient: Target, Service and TLS are required")
	}
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(cfg.TLS.ClientCredentials(cfg.Service)),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithKeepaliveParams(keepaliveParams),
		grpc.WithConnectParams(ConnectParams),
	}
	if cfg.Signer != nil {
		base = append(base, grpc.WithChainUnaryInterceptor(assertions(cfg.Signer, cfg.Service)))
	}
	conn, err := grpc.NewClient(cfg.Target, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("grpcclient: dial %s: %w", cfg.Target, err)
	}
	return conn, nil
}

// assertions adds an on-behalf-of assertion for callee to every call whose
// context carries a delegation.
func assertions(signer *token.Signer, callee string) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if d, ok := caller.DelegationFrom(ctx); ok {
			a, err := signer.Sign(callee, d.User, d.Permissions)
			if err != nil {
				// Nothing was sent, so the call had no effect and may be
				// retried (a reloaded certificate may sign again).
				return status.Errorf(codes.Unavailable, "grpcclient: sign on-behalf-of assertion: %v", err)
			}
			ctx = metadata.AppendToOutgoingContext(ctx, token.AssertionMetadataKey, a)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// DialUser returns an end user's client connection to target: TLS 1.3
// verifying the server's certificate against roots (nil: the system's) and
// the host name dialed, tracing and keepalives, no client certificate.
// Calls authenticate with a bearer token (Bearer, or authorization
// metadata).
func DialUser(target string, roots *x509.CertPool, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	base := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots})),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithKeepaliveParams(keepaliveParams),
	}
	conn, err := grpc.NewClient(target, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("grpcclient: dial %s: %w", target, err)
	}
	return conn, nil
}

// Bearer sends tok as the bearer token of every call on a connection
// (grpc.WithPerRPCCredentials) or of one call (grpc.PerRPCCredentials).
func Bearer(tok string) credentials.PerRPCCredentials { return bearer(tok) }

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// RetryDelay is the wait a ResourceExhausted error's RetryInfo asks for
// (the authorizer's rate limit sets it; 100ms when it names none), and
// whether err is such an error at all: what a well-behaved client waits
// before calling again with the same idempotency key.
func RetryDelay(err error) (time.Duration, bool) {
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 100 * time.Millisecond, true
}
