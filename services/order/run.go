package main

import (
	"context"
	"io"

	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/domainservice"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/opshttp"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	sessionv1 "github.com/goodgo/goodgo/proto/goodgo/session/v1"
	"github.com/goodgo/goodgo/services/order/internal/app"
	"github.com/goodgo/goodgo/services/order/internal/catalog"
	"github.com/goodgo/goodgo/services/order/internal/grpcapi"
	orderpg "github.com/goodgo/goodgo/services/order/internal/postgres"
)

// run is the composition root: domainservice.Open connects to PostgreSQL
// (creating and migrating the database) and Redis and sets up logging
// (JSON to stdout) and telemetry (lookup supplies the OTEL_* variables); run
// wires the use cases, and Serve serves them behind the idempotency guard
// with the ops HTTP endpoints until ctx is cancelled, then drains and
// returns nil. It returns an error when start-up fails or a server stops on
// its own.
func run(ctx context.Context, cfg Config, stdout io.Writer, lookup lifecycle.Lookup) error {
	kit, err := domainservice.Open(ctx, cfg.Config, version, db.Order,
		domainservice.API{Access: grpcapi.Policies(), Idempotency: grpcapi.IdempotencyPolicies()}, stdout, lookup)
	if err != nil {
		return err
	}
	defer kit.Close(ctx) // last: after the inventory connection
	// Dialing does not connect: the order service starts even while the
	// inventory service is still down, and PlaceOrder reports Unavailable.
	inventoryConn, err := kit.Security.Dial(cfg.InventoryAddr, "inventory")
	if err != nil {
		return err
	}
	defer func() { _ = inventoryConn.Close() }()
	repo, err := orderpg.NewRepository(kit.Pool, kit.Outbox, cfg.PIIKeys)
	if err != nil {
		return err
	}
	svc := app.New(repo,
		catalog.New(inventoryv1.NewInventoryServiceClient(inventoryConn), cfg.CatalogTimeout), kit.Locks)
	api := grpcapi.New(svc, kit.Signer, kit.Logger)
	sessions := grpcapi.NewSessions(kit.Guard, kit.Logger)
	// OrderQueryService (the read side) is not registered: it belongs to the
	// CQRS projection, a later part of this service.
	// Without inventory PlaceOrder fails (Unavailable) but the rest of the
	// service works: inventory's absence only makes it degraded.
	return kit.Serve(ctx, func(s grpc.ServiceRegistrar) {
		orderv1.RegisterOrderServiceServer(s, api)
		sessionv1.RegisterSessionServiceServer(s, sessions)
	}, opshttp.Check{Name: "inventory", Optional: true, Fn: opshttp.GRPCHealth(inventoryConn)})
}
