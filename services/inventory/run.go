package main

import (
	"context"
	"io"

	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/redisclient"
	"github.com/goodgo/goodgo/platform/telemetry"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	"github.com/goodgo/goodgo/services/inventory/internal/app"
	"github.com/goodgo/goodgo/services/inventory/internal/grpcapi"
	inventorypg "github.com/goodgo/goodgo/services/inventory/internal/postgres"
)

// run is the composition root: it connects to PostgreSQL (creating and
// migrating the database) and Redis, wires the use cases behind the gRPC
// server with the idempotency guard, and serves gRPC and the ops HTTP
// endpoints until ctx is cancelled; then both drain and run returns nil. It
// returns an error when start-up fails or a server stops on its own. Logs go
// to stdout as JSON; lookup supplies the OTEL_* variables.
func run(ctx context.Context, cfg Config, stdout io.Writer, lookup lifecycle.Lookup) error {
	logger := telemetry.NewLogger(stdout, cfg.Service, cfg.LogLevel)
	tel, err := telemetry.Setup(ctx, cfg.Service, version, lookup)
	if err != nil {
		return err
	}
	defer tel.Close(ctx, logger) // last, after the servers stopped, so the final spans are flushed
	reg := tel.Registry
	if cfg.VersionTokens.Dev {
		logger.Warn("VERSION_TOKEN_KEYS unset: signing version tokens with the public development key")
	}
	if cfg.DevOutboxKeys {
		logger.Warn("OUTBOX_KEYS unset: using the public development key for PII event payloads")
	}

	pool, err := postgres.Open(ctx, cfg.DatabaseURL, db.Inventory, logger, cfg.StartupTimeout)
	if err != nil {
		return err
	}
	defer pool.Close()
	rdb, err := redisclient.Connect(ctx, cfg.Redis.URL, cfg.Redis.Addrs, logger, cfg.StartupTimeout)
	if err != nil {
		return err
	}
	defer func() { _ = rdb.Close() }()

	guard, err := idempotency.New(idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: cfg.Idempotency.Prefix}),
		grpcapi.IdempotencyPolicies(), idempotency.Options{TTL: cfg.Idempotency.TTL}, reg, logger)
	if err != nil {
		return err
	}
	signer, err := optlock.NewSigner(cfg.VersionTokens.Active, cfg.VersionTokens.Keys)
	if err != nil {
		return err
	}
	locks, err := optlock.NewMetrics(reg)
	if err != nil {
		return err
	}
	events, err := outbox.NewWriter(cfg.OutboxKeys, reg)
	if err != nil {
		return err
	}
	svc := app.New(inventorypg.NewRepository(pool, events), signer, locks, cfg.AdminCallers, logger)
	api := grpcapi.New(svc, signer, logger)

	grpcServer, err := grpcserver.New(grpcserver.Config{Addr: cfg.GRPCAddr, ShutdownTimeout: cfg.ShutdownTimeout, DrainDelay: cfg.DrainDelay}, logger, reg,
		func(s *grpc.Server) { inventoryv1.RegisterInventoryServiceServer(s, api) },
		grpcserver.WithUnaryInterceptors(guard.UnaryServerInterceptor()))
	if err != nil {
		return err
	}
	// Ready means PostgreSQL answers. Redis is left out on purpose: while it
	// is down, reservations and releases still run (their database
	// constraints guard them) and only AdjustStock fails, so taking the
	// replica out of rotation would do more harm than good.
	ops, err := opshttp.New(cfg.HTTPAddr, reg, opshttp.Checks(opshttp.Check{Name: "postgres", Fn: pool.Ping}), logger)
	if err != nil {
		return err
	}

	logger.InfoContext(ctx, "inventory service started",
		"grpc_addr", grpcServer.Addr().String(), "http_addr", ops.Addr().String(), "version", version)
	if err := lifecycle.Serve(ctx, grpcServer.Serve, ops.Serve); err != nil {
		return err
	}
	logger.InfoContext(ctx, "inventory service stopped")
	return nil
}
