package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/telemetry"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/relay"
)

// telemetryFlushTimeout bounds flushing the last spans at exit.
const telemetryFlushTimeout = 5 * time.Second

// run is the composition root: it relays the outbox databases to Kafka and
// serves the gRPC health service and the ops endpoints until ctx is
// cancelled, then lets the batches in flight finish, releases its lanes and
// returns nil. Readiness (/readyz) needs one outbox database and a broker
// reachable. Logs go to stdout as JSON; lookup supplies the OTEL_*
// variables.
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

	keys, err := keyring.New(cfg.OutboxKeys.Active, cfg.OutboxKeys.Keys)
	if err != nil {
		return fmt.Errorf("OUTBOX_KEYS: %w", err)
	}
	kafka, err := relay.NewKafka(relay.KafkaConfig{
		Brokers:    cfg.KafkaBrokers,
		ClientID:   relay.ApplicationNamePrefix + cfg.RelayID,
		BatchSize:  cfg.BatchSize,
		BatchBytes: cfg.MaxBatchBytes,
	})
	if err != nil {
		return err
	}
	defer kafka.Close()
	rl, err := relay.New(relay.Config{
		ID:              cfg.RelayID,
		DatabaseURLs:    cfg.OutboxDatabaseURLs,
		BatchSize:       cfg.BatchSize,
		Workers:         cfg.Workers,
		PollInterval:    cfg.PollInterval,
		LeaseTTL:        cfg.LeaseTTL,
		Retention:       cfg.Retention,
		JanitorInterval: cfg.JanitorInterval,
		StatsInterval:   cfg.StatsInterval,
		MaxBatchBytes:   cfg.MaxBatchBytes,
	}, relay.Options{
		NewPublisher:   kafka.NewPublisher,
		Keys:           keys,
		Registerer:     tel.Registry,
		TracerProvider: tel.TracerProvider,
		Logger:         logger,
	})
	if err != nil {
		return err
	}
	logger.Info("outbox relay starting", "relay_id", cfg.RelayID, "databases", len(cfg.OutboxDatabaseURLs),
		"brokers", cfg.KafkaBrokers, "batch_size", cfg.BatchSize, "workers", cfg.Workers)

	// No API of its own: the gRPC server carries health and reflection so
	// the relay is probed like every other binary.
	gs, err := grpcserver.New(grpcserver.Config{Addr: cfg.GRPCAddr, ShutdownTimeout: cfg.ShutdownTimeout}, logger, tel.Registry, nil)
	if err != nil {
		return err
	}
	ready := func(ctx context.Context) error { return errors.Join(rl.Ready(ctx), kafka.Ping(ctx)) }
	ops, err := opshttp.New(cfg.HTTPAddr, tel.Registry, ready, logger)
	if err != nil {
		return err
	}
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return gs.Serve(ctx) })
	g.Go(func() error { return ops.Serve(ctx) })
	g.Go(func() error { return rl.Run(ctx) })
	err = g.Wait()
	logger.Info("outbox-relay stopped")
	return err
}
