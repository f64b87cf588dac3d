package main

import (
	"context"
	"io"

	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/kafkaconn"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/security"
	"github.com/goodgo/goodgo/platform/telemetry"
	opsv1 "github.com/goodgo/goodgo/proto/goodgo/ops/v1"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/parked"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/relay"
)

// run is the composition root: it relays the outbox databases to Kafka and
// serves the gRPC health service, the operators' ParkedEventService and the
// ops endpoints until ctx is
// cancelled, then lets the batches in flight finish, releases its lanes and
// returns nil. Readiness (/readyz) needs one outbox database reachable, a
// broker that answers with every topic and publishing that works (not failing for a lease
// TTL, lanes not handed over for want of a broker). Logs go to stdout as
// JSON; lookup supplies the OTEL_* variables.
func run(ctx context.Context, cfg Config, stdout io.Writer, lookup lifecycle.Lookup) error {
	logger := telemetry.NewLogger(stdout, cfg.Service, cfg.LogLevel)
	tel, err := telemetry.Setup(ctx, cfg.Service, version, lookup)
	if err != nil {
		return err
	}
	defer tel.Close(ctx, logger)

	kconn, err := kafkaconn.New(cfg.Kafka)
	if err != nil {
		return err
	}
	// The relay publishes to every topic (event.Topics). Topics are
	// created by an init step, never on demand: say at start which are
	// missing (readiness says so until they exist).
	clientID := relay.ApplicationNamePrefix + cfg.RelayID
	kconn.WarnMissingTopics(ctx, clientID, cfg.Kafka.Brokers, event.Topics, logger)
	kafka, err := relay.NewKafka(relay.KafkaConfig{
		Brokers:    cfg.Kafka.Brokers,
		Conn:       kconn,
		ClientID:   clientID,
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
		Probe:          kafka.Ping,
		Keys:           cfg.OutboxKeys,
		Registerer:     tel.Registry,
		TracerProvider: tel.TracerProvider,
		Logger:         logger,
	})
	if err != nil {
		return err
	}
	logger.Info("outbox relay starting", "relay_id", cfg.RelayID, "databases", len(cfg.OutboxDatabaseURLs),
		"kafka", cfg.Kafka.String(), "batch_size", cfg.BatchSize, "workers", cfg.Workers)

	// The gRPC server carries health (and reflection in development mode),
	// so the relay is probed like every other binary, and the operators'
	// ParkedEventService over the parked outbox rows.
	sec, err := security.Open(ctx, cfg.Security, cfg.Service, logger)
	if err != nil {
		return err
	}
	defer sec.Close(ctx)
	parkedEvents, err := parked.Open(cfg.OutboxDatabaseURLs, tel.Registry, logger)
	if err != nil {
		return err
	}
	defer parkedEvents.Close()
	srvCfg, err := sec.Secure(grpcserver.Config{Addr: cfg.GRPCAddr, ShutdownTimeout: cfg.ShutdownTimeout, DrainDelay: cfg.DrainDelay},
		parked.Policies(), nil, tel.Registry, logger)
	if err != nil {
		return err
	}
	gs, err := grpcserver.New(srvCfg, logger, tel.Registry, func(s grpc.ServiceRegistrar) {
		opsv1.RegisterParkedEventServiceServer(s, parkedEvents)
	})
	if err != nil {
		return err
	}
	ready := opshttp.Checks(
		opshttp.Check{Name: "postgres", Fn: rl.Ready},
		opshttp.Check{Name: "kafka", Fn: func(ctx context.Context) error {
			if err := rl.BrokerReady(ctx); err != nil {
				return opshttp.WithReason("publishing failing", err)
			}
			return kconn.Ready(ctx, clientID, cfg.Kafka.Brokers, event.Topics)
		}},
	)
	ops, err := opshttp.New(cfg.HTTPAddr, tel.Registry, ready, logger)
	if err != nil {
		return err
	}
	if cfg.Profiles {
		ops.ServeProfiles()
	}
	if err := lifecycle.Serve(ctx, gs.Serve, ops.Serve, rl.Run); err != nil {
		return err
	}
	logger.Info("outbox-relay stopped")
	return nil
}
