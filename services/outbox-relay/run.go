package main

import (
	"context"
	"io"

	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/platform/bootstrap"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/kafkaconn"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/opshttp"
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
	kit, err := bootstrap.Open(ctx, cfg.Common, cfg.Security, version, stdout, lookup)
	if err != nil {
		return err
	}
	defer kit.Close(ctx)
	logger := kit.Logger

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
		Registerer:     kit.Registry,
		TracerProvider: kit.TracerProvider,
		Logger:         logger,
	})
	if err != nil {
		return err
	}
	// The gRPC server carries health (and reflection in development mode),
	// so the relay is probed like every other binary, and the operators'
	// ParkedEventService over the parked outbox rows.
	parkedEvents, err := parked.Open(cfg.OutboxDatabaseURLs, kit.Registry, logger)
	if err != nil {
		return err
	}
	defer parkedEvents.Close()
	return kit.Serve(ctx, bootstrap.Server{
		Register: func(s grpc.ServiceRegistrar) { opsv1.RegisterParkedEventServiceServer(s, parkedEvents) },
		Policies: parked.Policies(),
		Checks: []opshttp.Check{
			{Name: "postgres", Fn: rl.Ready},
			{Name: "kafka", Fn: func(ctx context.Context) error {
				if err := rl.BrokerReady(ctx); err != nil {
					return opshttp.WithReason("publishing failing", err)
				}
				return kconn.Ready(ctx, clientID, cfg.Kafka.Brokers, event.Topics)
			}},
		},
		Run: []func(context.Context) error{rl.Run},
		Attrs: []any{"relay_id", cfg.RelayID, "databases", len(cfg.OutboxDatabaseURLs),
			"kafka", cfg.Kafka.String(), "batch_size", cfg.BatchSize, "workers", cfg.Workers},
	})
}
