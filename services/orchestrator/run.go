package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/bootstrap"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/kafkaconn"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/saga"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	opsv1 "github.com/goodgo/goodgo/proto/goodgo/ops/v1"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
	"github.com/goodgo/goodgo/services/orchestrator/internal/checkout"
	"github.com/goodgo/goodgo/services/orchestrator/internal/consumer"
	"github.com/goodgo/goodgo/services/orchestrator/internal/grpcapi"
	"github.com/goodgo/goodgo/services/orchestrator/internal/peers"
	"github.com/goodgo/goodgo/services/orchestrator/internal/reconciler"
)

// Kafka names of the orchestrator's inbox consumer.
const (
	consumerName  = "orchestrator"
	consumerGroup = "orchestrator"
)

// run is the composition root: it opens the orchestrator's database
// (creating and migrating it) and Redis, dials payment, inventory and order,
// and runs until ctx is cancelled: the saga engine (executing sagas, taking
// over those of crashed replicas), the order.created.v1 consumer that starts
// them, the reconciler that starts those the events did not, SagaService,
// ParkedEventService (operators resolve the consumer's parked events) and
// the ops endpoints. Then it stops consuming, drains
// gRPC, stops the engine (whose leases other replicas then take at once)
// and returns nil. It returns an error when start-up fails or a part stops
// on its own. Logs go to stdout as JSON; lookup supplies the OTEL_* variables.
func run(ctx context.Context, cfg Config, stdout io.Writer, lookup lifecycle.Lookup) error {
	// Its role may use its saga and inbox tables, nothing more: neither a
	// superuser nor the owner of its tables.
	kit, err := bootstrap.OpenService(ctx, cfg.ServiceConfig, version, db.Orchestrator, postgres.Privileges.Unrestricted,
		grpcapi.IdempotencyPolicies(), stdout, lookup)
	if err != nil {
		return err
	}
	defer kit.Close(ctx) // last, after everything stopped, so the final spans are flushed
	logger, reg, pool := kit.Logger, kit.Registry, kit.Pool

	// The neighbours, each checked to be the service meant (its
	// certificate's SPIFFE ID): grpc.NewClient connects lazily, so a
	// service that is not up yet only makes the first steps retry.
	paymentConn, err := kit.Dial(cfg.PaymentAddr, "payment")
	if err != nil {
		return err
	}
	inventoryConn, err := kit.Dial(cfg.InventoryAddr, "inventory")
	if err != nil {
		return err
	}
	orderConn, err := kit.Dial(cfg.OrderAddr, "order")
	if err != nil {
		return err
	}
	deny := make(map[string]bool, len(cfg.Saga.DenyUsers))
	for _, u := range cfg.Saga.DenyUsers {
		deny[u] = true
	}
	orderSaga := checkout.Definition(
		peers.Payments{Client: paymentv1.NewPaymentServiceClient(paymentConn)},
		peers.Inventory{Client: inventoryv1.NewInventoryServiceClient(inventoryConn)},
		peers.Orders{Client: orderv1.NewOrderServiceClient(orderConn)},
	)
	engine, err := saga.New(pool, cfg.ContextKeys, saga.Options{
		Owner:             cfg.Saga.OrchestratorID,
		Workers:           cfg.Saga.Workers,
		LeaseTTL:          cfg.Saga.LeaseTTL,
		PollInterval:      cfg.Saga.PollInterval,
		Deadline:          cfg.Saga.Deadline,
		StepTimeout:       cfg.Saga.StepTimeout,
		Retry:             saga.RetryPolicy{MaxAttempts: cfg.Saga.StepAttempts, MaxElapsed: cfg.Saga.StepBudget, Backoff: backoff.Policy{Min: 100 * time.Millisecond, Max: 2 * time.Second}},
		CompensationLimit: cfg.Saga.CompensationLimit,
		Authorize:         checkout.Authorizer{Deny: deny}.Authorize,
		Logger:            logger,
		Registerer:        reg,
		TracerProvider:    kit.TracerProvider,
	}, orderSaga)
	if err != nil {
		return err
	}

	kconn, err := kafkaconn.New(cfg.Kafka)
	if err != nil {
		return err
	}
	// Topics are created by an init step, never on demand: say at start
	// which are missing (readiness says so until they exist).
	consumedTopics := []string{event.TopicOrder}
	kconn.WarnMissingTopics(ctx, consumerName, cfg.Kafka.Brokers, consumedTopics, logger)
	handler := consumer.Handler(engine, logger)
	// The consumer is made, and joins its group, once its topics exist:
	// kafka-go's group reader (which joins as it is made) assigns only the
	// partitions of the topics that existed when it joined. Until then
	// readiness names the missing topic.
	inboxCfg := inbox.Config{
		Brokers: cfg.Kafka.Brokers, GroupID: consumerGroup, Consumer: consumerName, Topics: consumedTopics,
		Types: consumer.Types,
		// Offsets are committed once a second, not after each event (a
		// broker round trip per saga, on the path from the event to its
		// saga): after a crash up to a second of events comes again, and
		// the inbox skips them as duplicates.
		CommitInterval: time.Second,
	}
	inboxOpts := inbox.Options{Registerer: reg, TracerProvider: kit.TracerProvider, Logger: logger,
		Dialer: kconn.Dialer(consumerName), Keys: cfg.PIIKeys}
	consume := func(ctx context.Context) error {
		if err := kconn.AwaitTopics(ctx, consumerName, cfg.Kafka.Brokers, consumedTopics, time.Second); err != nil {
			return nil //nolint:nilerr // ctx ended: stopping before consuming is a clean stop
		}
		events, err := inbox.New(inboxCfg, pool, handler, inboxOpts)
		if err != nil {
			return err
		}
		return events.Run(ctx)
	}
	// Operators resolve the consumer's parked events (ParkedEventService):
	// a replay runs the same handler, exactly as the consumer would.
	parked, err := inbox.NewAdmin(consumerName, pool, handler, inbox.AdminOptions{Keys: cfg.PIIKeys, Logger: logger, Registerer: reg})
	if err != nil {
		return err
	}

	// The reconciler starts the saga of orders whose event never did.
	orders := peers.Orders{Client: orderv1.NewOrderServiceClient(orderConn)}
	rec, err := reconciler.New(orders, engine, reconciler.Config{Interval: cfg.Reconcile.Interval, OlderThan: cfg.Reconcile.After}, reg, logger)
	if err != nil {
		return err
	}

	// The engine outlives the consumer and the API: it stops after them, so
	// no event starts a saga on a stopped engine.
	engineCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	engineDone := make(chan error, 1)
	go func() { engineDone <- engine.Run(engineCtx) }()
	err = kit.Serve(ctx, bootstrap.Server{
		Register: func(s grpc.ServiceRegistrar) {
			orchestratorv1.RegisterSagaServiceServer(s, grpcapi.New(engine, logger))
			opsv1.RegisterParkedEventServiceServer(s, grpcapi.NewParked(parked, logger))
		},
		Policies:   grpcapi.Policies(),
		RateLimits: cfg.RateLimits,
		// Ready means PostgreSQL and a Kafka broker answer, with the topics
		// the consumer reads: without the first no saga moves, without the
		// second none starts. Losing either does not stop the orchestrator:
		// it waits, not ready, and resumes when they are back. Redis (only
		// RetrySaga and AbortSaga need it) and the neighbours (their absence
		// delays the steps calling them, which retry) only make it
		// degraded: listed by /readyz, still ready.
		Checks: []opshttp.Check{
			{Name: "kafka", Fn: func(ctx context.Context) error {
				return kconn.Ready(ctx, consumerName, cfg.Kafka.Brokers, consumedTopics)
			}},
			{Name: "payment", Optional: true, Fn: opshttp.GRPCHealth(paymentConn)},
			{Name: "inventory", Optional: true, Fn: opshttp.GRPCHealth(inventoryConn)},
			{Name: "order", Optional: true, Fn: opshttp.GRPCHealth(orderConn)},
		},
		Run: []func(context.Context) error{consume, rec.Run, func(ctx context.Context) error {
			select {
			case <-ctx.Done():
				return nil
			case err := <-engineDone: // the engine never stops on its own
				engineDone <- err
				return fmt.Errorf("saga engine stopped: %w", err)
			}
		}},
		Attrs: []any{"replica", cfg.Saga.OrchestratorID},
	})
	stopEngine()
	return errors.Join(err, <-engineDone)
}
