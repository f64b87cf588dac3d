package main

import (
	"context"
	"io"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/telemetry"
)

// telemetryFlushTimeout bounds flushing the last spans at exit.
const telemetryFlushTimeout = 5 * time.Second

// run is the composition root: it serves the gRPC health service and the ops
// endpoints until ctx is cancelled, then drains and returns nil. The relay
// loop itself arrives with the outbox-relay issue. Logs go to stdout as
// JSON; lookup supplies the OTEL_* variables.
func run(ctx context.Context, cfg Config, stdout io.Writer, lookup func(string) (string, bool)) error {
	logger := telemetry.NewLogger(stdout, cfg.Service, cfg.LogLevel)
	if cfg.OutboxKeys.Dev {
		logger.Warn("OUTBOX_KEYS unset: opening PII payloads with the public development key")
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

	// No API of its own: the gRPC server carries health and reflection so
	// the relay is probed like every other binary.
	gs, err := grpcserver.New(grpcserver.Config{Addr: cfg.GRPCAddr, ShutdownTimeout: cfg.ShutdownTimeout}, logger, tel.Registry, nil)
	if err != nil {
		return err
	}
	ops, err := opshttp.New(cfg.HTTPAddr, tel.Registry, nil, logger)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gs.Serve(ctx) })
	g.Go(func() error { return ops.Serve(ctx) })
	err = g.Wait()
	logger.Info("outbox-relay stopped")
	return err
}
