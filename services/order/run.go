package main

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/bootstrap"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/kafkaconn"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/servicedb"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	sessionv1 "github.com/goodgo/goodgo/proto/goodgo/session/v1"
	"github.com/goodgo/goodgo/services/order/internal/app"
	"github.com/goodgo/goodgo/services/order/internal/grpcapi"
	"github.com/goodgo/goodgo/services/order/internal/peers"
	orderpg "github.com/goodgo/goodgo/services/order/internal/postgres"
	"github.com/goodgo/goodgo/services/order/internal/projection"
)

// run is the composition root: bootstrap.OpenDomain connects to PostgreSQL
// (creating and migrating the database) and Redis and sets up logging
// (JSON to stdout) and telemetry (lookup supplies the OTEL_* variables); run
// wires the use cases, and Serve serves them behind the idempotency guard
// with the ops HTTP endpoints until ctx is cancelled, then drains and
// returns nil. It returns an error when start-up fails or a server stops on
// its own.
func run(ctx context.Context, cfg Config, stdout io.Writer, lookup lifecycle.Lookup) error {
	kit, err := bootstrap.OpenDomain(ctx, cfg.DomainConfig, version, db.Order, grpcapi.IdempotencyPolicies(), stdout, lookup)
	if err != nil {
		return err
	}
	defer kit.Close(ctx)
	// Dialing does not connect: the order service starts even while the
	// inventory service is still down, and PlaceOrder reports Unavailable.
	inventoryConn, err := kit.Dial(cfg.InventoryAddr, "inventory")
	if err != nil {
		return err
	}
	repo, err := orderpg.NewRepository(kit.Pool, kit.Outbox, cfg.PIIKeys)
	if err != nil {
		return err
	}
	svc := app.New(repo,
		peers.NewCatalog(inventoryv1.NewInventoryServiceClient(inventoryConn), cfg.CatalogTimeout), kit.Locks)
	api := grpcapi.New(svc, kit.Signer, kit.Logger)
	sessions := grpcapi.NewSessions(kit.Guard, kit.Logger)

	// The read side (CQRS) lives here rather than in a binary of its own:
	// it serves the order service's clients, shares its identity, policies
	// and rate limits, and its database belongs to the order service; a
	// sixth binary would add a deployment and certificate for no isolation
	// the read database does not already give.
	readPool, err := servicedb.Open(ctx, "order", cfg.Dev, cfg.ReadModel.Database, db.OrderRead, postgres.Privileges.Unrestricted, kit.Logger, cfg.StartupTimeout)
	if err != nil {
		return fmt.Errorf("read database (READ_DATABASE_URL): %w", err)
	}
	defer readPool.Close()
	queries := grpcapi.NewQueryServer(projection.NewReader(readPool, cfg.ReadModel.MaxWait), kit.Logger)
	checks := []opshttp.Check{
		// Without inventory PlaceOrder fails (Unavailable) but the rest of
		// the service works: inventory's absence only makes it degraded.
		{Name: "inventory", Optional: true, Fn: opshttp.GRPCHealth(inventoryConn)},
		// Without the read database only the query RPCs fail.
		{Name: "read-postgres", Optional: true, Fn: readPool.Ping},
	}
	if cfg.ReadModel.Projector {
		kconn, err := kafkaconn.New(cfg.ReadModel.Kafka)
		if err != nil {
			return err
		}
		projector, err := newProjector(cfg.ReadModel, readPool, kconn, kit, cfg.PIIKeys)
		if err != nil {
			return err
		}
		// The projector runs, and joins its group, once its topics exist:
		// kafka-go's group reader assigns only the partitions of the
		// topics that existed when it joined. Until then /readyz names the
		// missing topic.
		client, brokers := cfg.ReadModel.GroupID, cfg.ReadModel.Kafka.Brokers
		kconn.WarnMissingTopics(ctx, client, brokers, event.Topics, kit.Logger)
		pctx, stop := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := kconn.AwaitTopics(pctx, client, brokers, event.Topics, time.Second); err != nil {
				return // stopped before the topics came
			}
			_ = projector.Run(pctx)
		})
		defer func() { stop(); wg.Wait() }()
		checks = append(checks, opshttp.Check{Name: "kafka", Optional: true, Fn: func(ctx context.Context) error {
			return kconn.Ready(ctx, client, brokers, event.Topics)
		}})
	}
	return kit.Serve(ctx, bootstrap.Server{
		Register: func(s grpc.ServiceRegistrar) {
			orderv1.RegisterOrderServiceServer(s, api)
			orderv1.RegisterOrderQueryServiceServer(s, queries)
			sessionv1.RegisterSessionServiceServer(s, sessions)
		},
		Policies:   grpcapi.Policies(),
		RateLimits: cfg.RateLimits,
		Checks:     checks,
	})
}

// newProjector builds the read model's projector on the read database.
func newProjector(cfg ReadModelConfig, pool *pgxpool.Pool, kconn kafkaconn.Settings, kit *bootstrap.Domain, keys *keyring.Keyring) (*projection.Projector, error) {
	store, err := projection.NewStore(pool, projection.Table, cfg.GroupID, keys)
	if err != nil {
		return nil, err
	}
	m, err := projection.NewMetrics(kit.Registry)
	if err != nil {
		return nil, err
	}
	// Offsets are committed in the background every second rather than
	// after each batch (a broker round trip less per batch): a crash
	// redelivers at most that second's events, which the inbox skips.
	return projection.New(projection.Config{Config: inbox.Config{Brokers: cfg.Kafka.Brokers, GroupID: cfg.GroupID, Topics: event.Topics, CommitInterval: time.Second}, MaxBatch: cfg.MaxBatch},
		store, m, projection.Options{Registerer: kit.Registry, Logger: kit.Logger, Dialer: kconn.Dialer(cfg.GroupID)})
}
