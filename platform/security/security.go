// Package security assembles a binary's identity and its checks of
// callers from configuration: the mTLS certificate (platform/mtls), the
// verifier of end users' tokens and of services' on-behalf-of assertions,
// the signer of its own assertions (platform/token), and the gRPC server's
// credentials and Authorizer with the binary's policies (platform/authz).
// Every binary opens one Kit at start.
package security

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/token"
)

// Kit is a binary's identity and verifiers. Close releases it.
type Kit struct {
	// TLS is the binary's certificate and trusted CA, reloaded on change.
	TLS *mtls.Source
	// Tokens verifies bearer tokens; nil for a binary without end users.
	Tokens *token.Verifier
	// Assertions verifies the on-behalf-of assertions of calling services.
	Assertions *token.AssertionVerifier
	// Signer signs this binary's own on-behalf-of assertions.
	Signer *token.Signer

	dev bool
}

// Open loads service's credentials per cfg. The certificate must name
// service: a binary given another binary's certificate does not start.
// Errors name the file or setting at fault. In development mode it logs,
// once, that the binary runs so.
func Open(ctx context.Context, cfg config.Security, service string, logger *slog.Logger) (*Kit, error) {
	if cfg.Dev && logger != nil {
		logger.Warn("development mode (GOODGO_MODE=development): development credentials, public development keys for unset key variables, and reflection; never use it in production")
	}
	src, err := mtls.Load(cfg.TLS, logger)
	if err != nil {
		return nil, err
	}
	if got := src.Service(); got != service {
		return nil, fmt.Errorf("security: %s is the certificate of %s, not of %s", cfg.TLS.Cert, mtls.ID(got), mtls.ID(service))
	}
	k := &Kit{
		TLS:        src,
		Assertions: token.NewAssertionVerifier(src, service, mtls.ID),
		Signer:     token.NewSigner(src, service, mtls.ID),
		dev:        cfg.Dev,
	}
	if cfg.Tokens.Issuer != "" {
		if k.Tokens, err = token.NewVerifier(ctx, cfg.Tokens); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Secure returns srv with what the Kit decides for a gRPC server: the TLS
// credentials, the Authorizer of policies over the Kit's verifiers (with
// limiter for rate limits; nil: none), and reflection in development mode
// only.
func (k *Kit) Secure(srv grpcserver.Config, policies authz.Policies, limiter authz.Limiter,
	reg prometheus.Registerer, logger *slog.Logger,
) (grpcserver.Config, error) {
	cfg := authz.Config{Assertions: k.Assertions, Limiter: limiter}
	if k.Tokens != nil { // a nil *Verifier in the interface would not read as nil
		cfg.Tokens = k.Tokens
	}
	az, err := authz.New(policies, cfg, reg, logger)
	if err != nil {
		return srv, err
	}
	srv.Credentials, srv.Authorizer, srv.Reflection = k.TLS.ServerCredentials(), az, k.dev
	return srv, nil
}

// Dial connects to service at target with this binary's certificate,
// signing on-behalf-of assertions for delegated calls.
func (k *Kit) Dial(target, service string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return grpcclient.Dial(grpcclient.Config{Target: target, Service: service, TLS: k.TLS, Signer: k.Signer}, opts...)
}

// Close stops the token verifier's key refresh.
func (k *Kit) Close(ctx context.Context) {
	if k != nil && k.Tokens != nil {
		k.Tokens.Close(ctx)
	}
}
