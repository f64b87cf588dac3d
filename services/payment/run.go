package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/db"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"

	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/redisclient"
	"github.com/goodgo/goodgo/platform/telemetry"
	"github.com/goodgo/goodgo/services/payment/internal/app"
	"github.com/goodgo/goodgo/services/payment/internal/grpcapi"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
	paymentpg "github.com/goodgo/goodgo/services/payment/internal/postgres"
)

// run is the composition root: it connects to PostgreSQL (creating and
// migrating the database) and Redis, wires the payment use cases behind the
// gRPC server with the idempotency guard, serves gRPC and the ops HTTP
// endpoints, and returns nil once ctx is cancelled and everything has shut
// down. Logs go to stdout as JSON; lookup feeds the OTEL_* variables to
// telemetry.
func run(ctx context.Context, cfg Config, stdout io.Writer, lookup func(string) (string, bool)) (err error) {
	logger := telemetry.NewLogger(stdout, cfg.Service, cfg.LogLevel)
	tel, err := telemetry.Setup(ctx, cfg.Service, version, lookup)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		err = errors.Join(err, tel.Shutdown(sctx))
	}()
	reg := tel.Registry
	if cfg.VersionTokens.Dev {
		logger.Warn("VERSION_TOKEN_KEYS unset: signing version tokens with the public development key")
	}
	if cfg.DevOutboxKeys {
		logger.Warn("OUTBOX_KEYS unset: using the public development key for PII event payloads")
	}

	startCtx, cancelStart := context.WithTimeout(ctx, cfg.StartupTimeout)
	defer cancelStart()
	if err := ensureDatabase(startCtx, cfg.DatabaseURL, logger); err != nil {
		return err
	}
	pool, err := postgres.Connect(startCtx, cfg.DatabaseURL, logger, cfg.StartupTimeout)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := postgres.Migrate(startCtx, cfg.DatabaseURL, db.Payment, logger); err != nil {
		return err
	}
	rdb, err := redisclient.Connect(startCtx, cfg.RedisURL, cfg.RedisAddrs, logger, cfg.StartupTimeout)
	if err != nil {
		return err
	}
	defer rdb.Close()
	cancelStart()

	guard, err := idempotency.New(idempotency.NewRedisStore(rdb, idempotency.RedisOptions{}),
		grpcapi.IdempotencyPolicies(), idempotency.Options{TTL: cfg.IdempotencyTTL}, reg, logger)
	if err != nil {
		return err
	}
	lockMetrics, err := optlock.NewMetrics(reg)
	if err != nil {
		return err
	}
	signer, err := optlock.NewSigner(cfg.VersionTokens.Active, cfg.VersionTokens.Keys)
	if err != nil {
		return err
	}
	events, err := outbox.NewWriter(cfg.OutboxKeys, reg)
	if err != nil {
		return err
	}
	svc := app.New(paymentpg.NewRepository(pool, events), payment.DeclineRules{AboveMinor: cfg.DeclineAboveMinor},
		lockMetrics, app.WithLogger(logger))
	api := grpcapi.NewServer(svc, signer, logger)

	grpcSrv, err := grpcserver.New(grpcserver.Config{Addr: cfg.GRPCAddr, ShutdownTimeout: cfg.ShutdownTimeout}, logger, reg,
		func(s *grpc.Server) { paymentv1.RegisterPaymentServiceServer(s, api) },
		grpcserver.WithUnaryInterceptors(guard.UnaryServerInterceptor()))
	if err != nil {
		return err
	}
	// Ready means PostgreSQL answers. Redis is not part of readiness: every
	// mutating RPC is RedisDownSafe (grpcapi.IdempotencyPolicies), so the
	// service keeps paying correctly, if unguarded, while Redis is away.
	ready := func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		return nil
	}
	ops, err := opshttp.New(cfg.HTTPAddr, reg, ready, logger)
	if err != nil {
		return err
	}

	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return grpcSrv.Serve(gctx) })
	g.Go(func() error { return ops.Serve(gctx) })
	logger.Info("payment service started", "grpc_addr", grpcSrv.Addr().String(), "http_addr", ops.Addr().String(),
		"decline_above_minor", cfg.DeclineAboveMinor, "version", version)
	err = g.Wait()
	logger.Info("payment service stopped", "uptime", time.Since(start).Round(time.Second).String(), "error", errString(err))
	return err
}

// ensureDatabase creates the database if it is missing, retrying with
// backoff while the server is not reachable yet (it may start after us),
// until ctx ends. It must precede postgres.Connect, whose pool cannot reach
// a database that does not exist.
func ensureDatabase(ctx context.Context, url string, logger *slog.Logger) error {
	wait := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := postgres.EnsureDatabase(ctx, url)
		if err == nil {
			return nil
		}
		logger.WarnContext(ctx, "cannot ensure the database yet; retrying", "attempt", attempt, "retry_in", wait.String(), "error", err.Error())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("startup: %w", err)
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
