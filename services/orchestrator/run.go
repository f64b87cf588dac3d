package main

import (
	"context"
	"io"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/telemetry"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	"github.com/goodgo/goodgo/services/orchestrator/internal/grpcapi"
)

// telemetryFlushTimeout bounds flushing the last spans at exit.
const telemetryFlushTimeout = 5 * time.Second

// run is the composition root: it opens the orchestrator's database
// (creating and migrating it), serves SagaService and the ops endpoints
// until ctx is cancelled, then drains and returns nil. It returns an error
// when start-up fails or a server stops on its own. Logs go to stdout as
// JSON; lookup supplies the OTEL_* variables.
func run(ctx context.Context, cfg Config, stdout io.Writer, lookup func(string) (string, bool)) error {
	logger := telemetry.NewLogger(stdout, cfg.Service, cfg.LogLevel)
	if cfg.ContextKeys.Dev {
		logger.Warn("SAGA_CONTEXT_KEYS unset: encrypting saga context with the public development key")
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

	pool, err := postgres.Open(ctx, cfg.DatabaseURL, db.Orchestrator, logger, cfg.StartupTimeout)
	if err != nil {
		return err
	}
	defer pool.Close()

	gs, err := grpcserver.New(grpcserver.Config{Addr: cfg.GRPCAddr, ShutdownTimeout: cfg.ShutdownTimeout}, logger, tel.Registry,
		func(s *grpc.Server) { orchestratorv1.RegisterSagaServiceServer(s, grpcapi.New()) })
	if err != nil {
		return err
	}
	ops, err := opshttp.New(cfg.HTTPAddr, tel.Registry, pool.Ping, logger)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gs.Serve(ctx) })
	g.Go(func() error { return ops.Serve(ctx) })
	err = g.Wait()
	logger.Info("orchestrator stopped")
	return err
}
