package main

import (
	"net/url"
	"time"

	"github.com/goodgo/goodgo/platform/bootstrap"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/services/order/internal/projection"
)

// Config is the order service's configuration, read once from the
// environment by loadConfig. Every variable has a default that works on a
// developer machine.
type Config struct {
	// Shared with payment and inventory: GRPC_ADDR (127.0.0.1:50051),
	// HTTP_ADDR (127.0.0.1:9101), DATABASE_URL (goodgo_order), Redis,
	// idempotency, VERSION_TOKEN_* and OUTBOX_* (see bootstrap.DomainConfig).
	// OUTBOX_KEYS must match the outbox-relay's, which decrypts the PII
	// events this service writes.
	bootstrap.DomainConfig

	// InventoryAddr is the gRPC target of the inventory service, which owns
	// the catalog (INVENTORY_ADDR).
	InventoryAddr string
	// CatalogTimeout bounds one catalog read during PlaceOrder
	// (CATALOG_TIMEOUT, default 2s).
	CatalogTimeout time.Duration

	// ReadModel is the CQRS read side this binary hosts: the projector
	// and OrderQueryService.
	ReadModel ReadModelConfig
}

// ReadModelConfig configures the read side.
type ReadModelConfig struct {
	// Database is the read database, as the order service's own role
	// (READ_DATABASE_URL, default goodgo_order_read on the local server as
	// goodgo_order: DATABASE_URL's database with "_read" appended), and
	// as its owner to create, migrate and rebuild it
	// (MIGRATE_READ_DATABASE_URL; default MIGRATE_DATABASE_URL's, "_read"
	// appended).
	Database config.Database
	// Kafka is the cluster the projector reads (KAFKA_*).
	Kafka config.Kafka
	// Projector runs the projector in this binary (PROJECTOR, default
	// true). Queries are served either way; replicas that only serve them
	// may turn it off.
	Projector bool
	// GroupID is the projector's consumer group (PROJECTOR_GROUP, default
	// order-read-projector).
	GroupID string
	// MaxBatch bounds the events of one view transaction
	// (PROJECTOR_MAX_BATCH, default 1000).
	MaxBatch int
	// MaxWait bounds a read-your-writes wait of GetOrderView
	// (READ_YOUR_WRITES_MAX_WAIT, default 2s).
	MaxWait time.Duration
}

// loadConfig reads the configuration through lookup (os.LookupEnv in main).
// The error names every bad variable, one "NAME: problem" line each.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	e := config.NewEnv(lookup)
	c := Config{
		DomainConfig:   bootstrap.LoadDomainConfig(e, "order", "127.0.0.1:50051", "127.0.0.1:9101"),
		InventoryAddr:  e.String("INVENTORY_ADDR", "127.0.0.1:50053"),
		CatalogTimeout: e.Duration("CATALOG_TIMEOUT", 2*time.Second),
	}
	c.ReadModel = loadReadModel(e, c.Database)
	if c.CatalogTimeout <= 0 {
		e.Invalid("CATALOG_TIMEOUT", "must be positive")
	}
	return c, e.Err()
}

// readURL is READ_DATABASE_URL's default: the write database's server,
// role and options, with "_read" appended to the database's name
// (goodgo_order_read by default), so that each order database (a test's,
// say) has its own read database beside it.
func readURL(writeURL string) string {
	u, err := url.Parse(writeURL)
	if err != nil || u.Path == "" || u.Path == "/" {
		return "postgres://" + config.RoleName("order") + "@127.0.0.1:5432/" + config.RoleName("order") + "_read?sslmode=disable"
	}
	u.Path += "_read"
	u.RawPath = ""
	return u.String()
}

// loadReadModel reads ReadModelConfig; problems are recorded in e.
func loadReadModel(e *config.Env, write config.Database) ReadModelConfig {
	r := ReadModelConfig{
		Database: config.Database{
			URL: e.URL("READ_DATABASE_URL", readURL(write.URL), "postgres", "postgresql"),
		},
		Kafka:     config.LoadKafka(e),
		Projector: e.Bool("PROJECTOR", true),
		GroupID:   e.String("PROJECTOR_GROUP", projection.DefaultGroupID),
		MaxBatch:  e.Int("PROJECTOR_MAX_BATCH", projection.DefaultMaxBatch),
		MaxWait:   e.Duration("READ_YOUR_WRITES_MAX_WAIT", projection.DefaultMaxWait),
	}
	// The read database is migrated by whoever migrates the write one
	// (MIGRATE_DATABASE_URL, or its development default), unless
	// MIGRATE_READ_DATABASE_URL names another owner.
	if e.String("MIGRATE_READ_DATABASE_URL", "") != "" {
		r.Database.MigrateURL = e.URL("MIGRATE_READ_DATABASE_URL", "", "postgres", "postgresql")
	} else if write.MigrateURL != "" {
		r.Database.MigrateURL = readURL(write.MigrateURL)
	}
	if r.MaxBatch < 1 || r.MaxBatch > 10000 {
		e.Invalid("PROJECTOR_MAX_BATCH", "must be between 1 and 10000")
	}
	if r.MaxWait <= 0 {
		e.Invalid("READ_YOUR_WRITES_MAX_WAIT", "must be positive")
	}
	return r
}
