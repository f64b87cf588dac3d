package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/redisclient"
	"github.com/goodgo/goodgo/platform/telemetry"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	"github.com/goodgo/goodgo/services/order/internal/app"
	"github.com/goodgo/goodgo/services/order/internal/catalog"
	"github.com/goodgo/goodgo/services/order/internal/grpcapi"
	orderpg "github.com/goodgo/goodgo/services/order/internal/postgres"
)

// run is the composition root: it connects to PostgreSQL (creating and
// migrating the database) and Redis, wires the use cases to their adapters,
// and serves gRPC and the ops HTTP endpoints until ctx is cancelled; then it
// drains both and returns nil. It returns an error if start-up fails or a
// server stops on its own. Logs go to stdout as JSON; lookup supplies the
// standard OTEL_* variables to the tracer set-up.
func run(ctx context.Context, cfg Config, stdout io.Writer, lookup func(string) (string, bool)) error {
	logger := telemetry.NewLogger(stdout, cfg.Service, cfg.LogLevel)
	tel, err := telemetry.Setup(ctx, cfg.Service, version, lookup)
	if err != nil {
		return err
	}
	defer func() {
		// Last, after the servers stopped, so the final spans are flushed.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			logger.Warn("telemetry shutdown", "error", err)
		}
	}()
	reg := tel.Registry
	if cfg.DevVersionTokenKeys {
		logger.Warn("VERSION_TOKEN_KEYS is not set: signing version tokens with the public development key")
	}
	if cfg.DevOutboxKeys {
		logger.Warn("OUTBOX_KEYS is not set: encrypting PII events with the public development key")
	}

	// EnsureDatabase does not wait for the server the way Connect does, and
	// Connect cannot wait for a database that does not exist yet.
	if err := retryStartup(ctx, logger, cfg.StartupTimeout, func(ctx context.Context) error {
		return postgres.EnsureDatabase(ctx, cfg.DatabaseURL)
	}); err != nil {
		return err
	}
	pool, err := postgres.Connect(ctx, cfg.DatabaseURL, logger, cfg.StartupTimeout)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := postgres.Migrate(ctx, cfg.DatabaseURL, db.Order, logger); err != nil {
		return err
	}
	rdb, err := redisclient.Connect(ctx, cfg.RedisURL, cfg.RedisAddrs, logger, cfg.StartupTimeout)
	if err != nil {
		return err
	}
	defer func() { _ = rdb.Close() }()

	guard, err := idempotency.New(idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: cfg.IdempotencyPrefix}),
		grpcapi.Policies(), idempotency.Options{TTL: cfg.IdempotencyTTL}, reg, logger)
	if err != nil {
		return err
	}
	signer, err := optlock.NewSigner(cfg.VersionTokenActiveKey, cfg.VersionTokenKeys)
	if err != nil {
		return err
	}
	locks, err := optlock.NewMetrics(reg)
	if err != nil {
		return err
	}
	writer, err := outbox.NewWriter(cfg.OutboxKeys, reg)
	if err != nil {
		return err
	}
	// Dialing does not connect: the order service starts even while the
	// inventory service is still down, and PlaceOrder reports Unavailable.
	inventoryConn, err := grpcclient.Dial(cfg.InventoryAddr)
	if err != nil {
		return err
	}
	defer func() { _ = inventoryConn.Close() }()

	orders := app.New(orderpg.New(pool, writer),
		catalog.New(inventoryv1.NewInventoryServiceClient(inventoryConn), cfg.CatalogTimeout), locks)
	// OrderQueryService (the read side) is not registered: it belongs to the
	// CQRS projection, a later part of this service.
	srv, err := grpcserver.New(grpcserver.Config{Addr: cfg.GRPCAddr, ShutdownTimeout: cfg.ShutdownTimeout}, logger, reg,
		func(s *grpc.Server) { orderv1.RegisterOrderServiceServer(s, grpcapi.New(orders, signer, logger)) },
		grpcserver.WithUnaryInterceptors(guard.UnaryServerInterceptor()))
	if err != nil {
		return err
	}
	ready := func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		if err := rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		return nil
	}
	ops, err := opshttp.New(cfg.HTTPAddr, reg, ready, logger)
	if err != nil {
		return err
	}
	logger.InfoContext(ctx, "order service started",
		"grpc_addr", srv.Addr().String(), "http_addr", ops.Addr().String(), "version", version)
	return serve(ctx, logger, srv.Serve, ops.Serve)
}

// serve runs the servers until ctx is cancelled or one of them stops on its
// own, which stops the others too. It returns the servers' errors joined.
func serve(ctx context.Context, logger *slog.Logger, servers ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(servers))
	for _, s := range servers {
		go func() { errc <- s(ctx) }()
	}
	var errs []error
	for range servers {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
		cancel() // the first to stop stops the rest
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	logger.Info("order service stopped")
	return nil
}

// retryStartup calls fn until it succeeds, ctx ends or maxWait has passed,
// backing off from 100 ms to 2 s between attempts.
func retryStartup(ctx context.Context, logger *slog.Logger, maxWait time.Duration, fn func(context.Context) error) error {
	deadline := time.Now().Add(maxWait)
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if time.Now().Add(delay).After(deadline) {
			return fmt.Errorf("gave up after %s: %w", maxWait, err)
		}
		logger.WarnContext(ctx, "postgres not reachable yet; retrying", "attempt", attempt, "retry_in", delay.String(), "error", err.Error())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-t.C:
		}
		delay = min(2*delay, 2*time.Second)
	}
}
