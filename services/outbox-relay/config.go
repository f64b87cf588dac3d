package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/relay"
)

// Config is the relay's configuration, read once from the environment by
// loadConfig. Every variable has a default that works on a developer machine.
type Config struct {
	// Common: GRPC_ADDR (127.0.0.1:50055, health and ParkedEventService), HTTP_ADDR
	// (127.0.0.1:9105), LOG_LEVEL, SHUTDOWN_TIMEOUT, STARTUP_TIMEOUT,
	// GOODGO_MODE.
	config.Common
	// Security names the relay's certificate (TLS_CERT_FILE, TLS_KEY_FILE,
	// TLS_CA_FILE): its gRPC server (health, and the operators'
	// ParkedEventService) is served over TLS like every other, and its
	// identity is its own; and the token issuer whose bearer tokens name
	// the operators (AUTH_ISSUER, AUTH_AUDIENCE, AUTH_JWKS_URL or
	// AUTH_JWKS_FILE, AUTH_LEEWAY).
	Security config.Security
	// OutboxDatabaseURLs are the databases whose outbox tables the relay
	// drains (OUTBOX_DATABASE_URLS, comma-separated). The relay never
	// creates them: one that does not exist yet is retried until its
	// service has created and migrated it. The relay connects as its own
	// role, goodgo_relay, which may read, mark and delete outbox rows and
	// nothing else; it logs at start what its role may do in each database
	// and warns when that is more.
	OutboxDatabaseURLs []string
	// Kafka is the cluster the events are published to: KAFKA_BROKERS,
	// TLS (KAFKA_TLS, KAFKA_CA_FILE, KAFKA_TLS_*) and SASL (KAFKA_SASL_*).
	Kafka config.Kafka
	// OutboxKeys open PII payloads sealed by the writers (OUTBOX_KEYS,
	// OUTBOX_ACTIVE_KEY): every key a writer may have used must be here.
	// The public development key is the default in development mode only.
	OutboxKeys *keyring.Keyring
	// RelayID names this replica in lane leases (RELAY_ID, default
	// hostname-pid-random; at most 50 bytes).
	RelayID string
	// BatchSize is the most events published per batch (OUTBOX_BATCH_SIZE,
	// default 500, 1 to 5000).
	BatchSize int
	// Workers is the number of concurrent batch loops per database
	// (OUTBOX_WORKERS, default 4, 1 to 32).
	Workers int
	// PollInterval is the fallback wake-up when no NOTIFY arrives
	// (OUTBOX_POLL_INTERVAL, default 1s).
	PollInterval time.Duration
	// LeaseTTL is how long a lane lease lasts without renewal; leases are
	// renewed every LeaseTTL/3 and a dead replica's lanes move after at
	// most this long (OUTBOX_LEASE_TTL, default 3s, at least 1s).
	LeaseTTL time.Duration
	// Retention is how long published rows are kept (OUTBOX_RETENTION,
	// default 1m); JanitorInterval is how often they are deleted
	// (OUTBOX_JANITOR_INTERVAL, default 5s).
	Retention       time.Duration
	JanitorInterval time.Duration
	// StatsInterval is how often the table size and lag gauges are sampled
	// (OUTBOX_STATS_INTERVAL, default 5s).
	StatsInterval time.Duration
	// MaxBatchBytes is the broker's max.message.bytes: batches are cut to
	// it and a larger single event is parked (OUTBOX_MAX_BATCH_BYTES,
	// default 1048576).
	MaxBatchBytes int
}

// loadConfig reads the configuration through lookup (os.LookupEnv in main).
// The error names every bad variable, one "NAME: problem" line each.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	e := config.NewEnv(lookup)
	c := Config{
		Common: config.LoadCommon(e, "outbox-relay", "127.0.0.1:50055", "127.0.0.1:9105"),
		OutboxDatabaseURLs: e.URLList("OUTBOX_DATABASE_URLS", []string{
			"postgres://goodgo_relay@127.0.0.1:5432/goodgo_order?sslmode=disable",
			"postgres://goodgo_relay@127.0.0.1:5432/goodgo_payment?sslmode=disable",
			"postgres://goodgo_relay@127.0.0.1:5432/goodgo_inventory?sslmode=disable",
		}, "postgres", "postgresql"),
		Kafka:           config.LoadKafka(e),
		RelayID:         e.String("RELAY_ID", defaultRelayID()),
		BatchSize:       intIn(e, "OUTBOX_BATCH_SIZE", relay.DefaultBatchSize, 1, 5000),
		Workers:         intIn(e, "OUTBOX_WORKERS", relay.DefaultWorkers, 1, 32),
		PollInterval:    atLeast(e, "OUTBOX_POLL_INTERVAL", relay.DefaultPollInterval, 10*time.Millisecond),
		LeaseTTL:        atLeast(e, "OUTBOX_LEASE_TTL", relay.DefaultLeaseTTL, time.Second),
		Retention:       e.Duration("OUTBOX_RETENTION", relay.DefaultRetention),
		JanitorInterval: atLeast(e, "OUTBOX_JANITOR_INTERVAL", relay.DefaultJanitorInterval, 10*time.Millisecond),
		StatsInterval:   atLeast(e, "OUTBOX_STATS_INTERVAL", relay.DefaultStatsInterval, 10*time.Millisecond),
		MaxBatchBytes:   intIn(e, "OUTBOX_MAX_BATCH_BYTES", relay.DefaultMaxBatchBytes, 4096, 64<<20),
	}
	if len(c.RelayID) > relay.MaxRelayIDLen {
		e.Invalid("RELAY_ID", fmt.Sprintf("at most %d bytes (got %d)", relay.MaxRelayIDLen, len(c.RelayID)))
	}
	c.OutboxKeys = e.Keyring(config.OutboxKeys, c.Dev)
	c.Security = config.LoadSecurity(e, c.Service, c.Dev, true)
	return c, e.Err()
}

// intIn reads an integer that must lie in [lo, hi].
func intIn(e *config.Env, name string, def, lo, hi int) int {
	n := e.Int(name, def)
	if n < lo || n > hi {
		e.Invalid(name, fmt.Sprintf("must be from %d to %d (got %d)", lo, hi, n))
		return def
	}
	return n
}

// atLeast reads a duration that must be at least lo.
func atLeast(e *config.Env, name string, def, lo time.Duration) time.Duration {
	d := e.Duration(name, def)
	if d < lo {
		e.Invalid(name, fmt.Sprintf("must be at least %s (got %s)", lo, d))
		return def
	}
	return d
}

// defaultRelayID is unique per process: hostname (a pod name in
// Kubernetes), pid and a random suffix, so that a restarted replica never
// mistakes its predecessor's leases for its own.
func defaultRelayID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "relay"
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	tail := "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(suffix)
	if len(host)+len(tail) > relay.MaxRelayIDLen {
		host = host[:relay.MaxRelayIDLen-len(tail)]
	}
	return host + tail
}
