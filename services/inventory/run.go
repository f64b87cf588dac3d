package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
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

// telemetryFlushTimeout bounds flushing the last spans at exit.
const telemetryFlushTimeout = 5 * time.Second

// run is the composition root: it connects to PostgreSQL (creating and
// migrating the database) and Redis, wires the use cases behind the gRPC
// server and the ops HTTP server, and serves until ctx is cancelled. Then
// both servers drain and run returns nil; it returns an error when start-up
// fails or a server stops on its own. Logs go to stdout as JSON; lookup
// supplies the OTEL_* variables.
func run(ctx context.Context, cfg Config, stdout io.Writer, lookup func(string) (string, bool)) error {
	logger := telemetry.NewLogger(stdout, cfg.Service, cfg.LogLevel)
	if cfg.VersionTokenKeys.Dev {
		logger.Warn("VERSION_TOKEN_KEYS unset: signing version tokens with the public development key")
	}
	if cfg.DevOutboxKeys {
		logger.Warn("OUTBOX_KEYS unset: using the public development key for PII event payloads")
	}

	tel, err := telemetry.Setup(ctx, cfg.Service, version, lookup)
	if err != nil {
		return err
	}
	defer func() {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), telemetryFlushTimeout)
		defer cancel()
		if err := tel.Shutdown(fctx); err != nil {
			logger.Warn("telemetry shutdown", "error", err)
		}
	}()
	reg := tel.Registry

	startCtx, cancelStart := context.WithTimeout(ctx, cfg.StartupTimeout)
	defer cancelStart()
	pool, err := postgres.Open(startCtx, cfg.DatabaseURL, db.Inventory, logger, cfg.StartupTimeout)
	if err != nil {
		return err
	}
	defer pool.Close()
	rdb, err := redisclient.Connect(startCtx, cfg.RedisURL, cfg.RedisAddrs, logger, cfg.StartupTimeout)
	if err != nil {
		return err
	}
	defer func() { _ = rdb.Close() }()
	cancelStart()

	signer, err := optlock.NewSigner(cfg.VersionTokenKeys.Active, cfg.VersionTokenKeys.Keys)
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
	svc := app.New(inventorypg.NewRepository(pool, events), signer, locks, logger)
	guard, err := idempotency.New(idempotency.NewRedisStore(rdb, idempotency.RedisOptions{}),
		grpcapi.IdempotencyPolicies(), idempotency.Options{TTL: cfg.IdempotencyTTL}, reg, logger)
	if err != nil {
		return err
	}

	api := grpcapi.New(svc, signer, logger)
	gs, err := grpcserver.New(grpcserver.Config{Addr: cfg.GRPCAddr, ShutdownTimeout: cfg.ShutdownTimeout}, logger, reg,
		func(s *grpc.Server) { inventoryv1.RegisterInventoryServiceServer(s, api) },
		grpcserver.WithUnaryInterceptors(guard.UnaryServerInterceptor()))
	if err != nil {
		return err
	}
	// Ready means PostgreSQL answers. Redis is left out on purpose: while it
	// is down, reservations and releases still run (their database
	// constraints guard them) and only AdjustStock fails, so taking the
	// replica out of rotation would do more harm than good.
	ops, err := opshttp.New(cfg.HTTPAddr, reg, pool.Ping, logger)
	if err != nil {
		return err
	}

	return serveAll(ctx, logger, gs.Serve, ops.Serve)
}

// serveAll runs every serve function until ctx is cancelled or one of them
// returns; then it cancels the others and waits for all of them. It returns
// the errors of those that failed.
func serveAll(ctx context.Context, logger *slog.Logger, serves ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, serve := range serves {
		wg.Go(func() {
			err := serve(ctx)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
			cancel() // one server stopping stops the binary
		})
	}
	wg.Wait()
	logger.Info("inventory stopped")
	return errors.Join(errs...)
}
