package main

import (
	"context"
	"io"

	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/bootstrap"
	"github.com/goodgo/goodgo/platform/lifecycle"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
	"github.com/goodgo/goodgo/services/payment/internal/app"
	"github.com/goodgo/goodgo/services/payment/internal/grpcapi"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
	paymentpg "github.com/goodgo/goodgo/services/payment/internal/postgres"
)

// run is the composition root: bootstrap.OpenDomain connects to PostgreSQL
// (creating and migrating the database) and Redis and sets up logging
// (JSON to stdout) and telemetry (lookup supplies the OTEL_* variables); run
// wires the use cases, and Serve serves them behind the idempotency guard
// with the ops HTTP endpoints until ctx is cancelled, then drains and
// returns nil. It returns an error when start-up fails or a server stops on
// its own.
func run(ctx context.Context, cfg Config, stdout io.Writer, lookup lifecycle.Lookup) error {
	kit, err := bootstrap.OpenDomain(ctx, cfg.DomainConfig, version, db.Payment, grpcapi.IdempotencyPolicies(), stdout, lookup)
	if err != nil {
		return err
	}
	defer kit.Close(ctx)
	svc := app.New(paymentpg.NewRepository(kit.Pool, kit.Outbox), payment.DeclineRules{AboveMinor: cfg.DeclineAboveMinor},
		kit.Locks, app.WithLogger(kit.Logger))
	api := grpcapi.New(svc, kit.Signer, kit.Logger)
	return kit.Serve(ctx, bootstrap.Server{
		Register:   func(s grpc.ServiceRegistrar) { paymentv1.RegisterPaymentServiceServer(s, api) },
		Policies:   grpcapi.Policies(),
		RateLimits: cfg.RateLimits,
	})
}
