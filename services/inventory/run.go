package main

import (
	"context"
	"io"

	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/bootstrap"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/optlock"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	"github.com/goodgo/goodgo/services/inventory/internal/app"
	"github.com/goodgo/goodgo/services/inventory/internal/grpcapi"
	inventorypg "github.com/goodgo/goodgo/services/inventory/internal/postgres"
)

// run is the composition root: bootstrap.OpenDomain connects to PostgreSQL
// (creating and migrating the database) and Redis and sets up logging
// (JSON to stdout) and telemetry (lookup supplies the OTEL_* variables); run
// wires the use cases, and Serve serves them behind the idempotency guard
// with the ops HTTP endpoints until ctx is cancelled, then drains and
// returns nil. It returns an error when start-up fails or a server stops on
// its own.
func run(ctx context.Context, cfg Config, stdout io.Writer, lookup lifecycle.Lookup) error {
	kit, err := bootstrap.OpenDomain(ctx, cfg.DomainConfig, version, db.Inventory, grpcapi.IdempotencyPolicies(), stdout, lookup)
	if err != nil {
		return err
	}
	defer kit.Close(ctx)
	// Hot SKUs (flash sales) switch to group-committed reservations.
	hot, err := optlock.NewContention(event.AggregateProduct, optlock.ContentionOptions{}, kit.Registry)
	if err != nil {
		return err
	}
	repo := inventorypg.NewRepository(kit.Pool, kit.Outbox, inventorypg.WithContention(hot))
	svc := app.New(repo, kit.Signer, kit.Locks, hot, kit.Logger)
	api := grpcapi.New(svc, kit.Signer, kit.Logger)
	return kit.Serve(ctx, bootstrap.Server{
		Register:   func(s grpc.ServiceRegistrar) { inventoryv1.RegisterInventoryServiceServer(s, api) },
		Policies:   grpcapi.Policies(),
		RateLimits: cfg.RateLimits,
	})
}
