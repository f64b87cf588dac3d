package main

import (
	"time"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/keyring"
)

// Config is the order service's configuration, read once from the
// environment by loadConfig. Every variable has a default that works on a
// developer machine.
type Config struct {
	// Common: GRPC_ADDR (127.0.0.1:50051), HTTP_ADDR (127.0.0.1:9101),
	// LOG_LEVEL, SHUTDOWN_TIMEOUT, STARTUP_TIMEOUT.
	config.Common

	// DatabaseURL is the order service's own PostgreSQL database
	// (DATABASE_URL); it is created if missing and migrated at start.
	DatabaseURL string
	// Redis holds the idempotency keys (REDIS_URL, REDIS_ADDRS).
	Redis config.Redis
	// Idempotency tunes the idempotency keys (IDEMPOTENCY_TTL,
	// IDEMPOTENCY_KEY_PREFIX).
	Idempotency config.Idempotency
	// InventoryAddr is the gRPC target of the inventory service, which owns
	// the catalog (INVENTORY_ADDR).
	InventoryAddr string
	// CatalogTimeout bounds one catalog read during PlaceOrder
	// (CATALOG_TIMEOUT, default 2s).
	CatalogTimeout time.Duration
	// VersionTokens sign and verify version tokens, by key id
	// (VERSION_TOKEN_KEYS "kid:base64,…", keys of at least 32 bytes;
	// VERSION_TOKEN_ACTIVE_KEY signs, default the only key id). Unset, the
	// public development key is used and run logs a warning.
	VersionTokens config.KeySet
	// OutboxKeys encrypts PII event payloads (OUTBOX_KEYS "kid:base64,…",
	// 32-byte AES-256 keys; OUTBOX_ACTIVE_KEY, default the only key id). It
	// must match the outbox-relay's, which decrypts the PII events this
	// service writes.
	OutboxKeys *keyring.Keyring
	// DevOutboxKeys reports that OUTBOX_KEYS was unset and the public
	// development key is in use.
	DevOutboxKeys bool
	// AdminCallers are the caller identities (x-user-id) that may confirm
	// and cancel orders and read or readdress anyone's
	// (ORDER_ADMIN_CALLERS, comma-separated, default "orchestrator", the
	// identity the orchestrator's saga calls with).
	AdminCallers []string
}

// loadConfig reads the configuration through lookup (os.LookupEnv in main).
// The error names every bad variable, one "NAME: problem" line each.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	e := config.NewEnv(lookup)
	c := Config{
		Common:         config.LoadCommon(e, "order", "127.0.0.1:50051", "127.0.0.1:9101"),
		DatabaseURL:    e.URL("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/goodgo_order?sslmode=disable", "postgres", "postgresql"),
		Redis:          config.LoadRedis(e),
		Idempotency:    config.LoadIdempotency(e),
		InventoryAddr:  e.String("INVENTORY_ADDR", "127.0.0.1:50053"),
		CatalogTimeout: e.Duration("CATALOG_TIMEOUT", 2*time.Second),
		VersionTokens:  e.KeySet("VERSION_TOKEN_KEYS", "VERSION_TOKEN_ACTIVE_KEY", config.DevVersionTokenKeys, 32),
		AdminCallers:   e.List("ORDER_ADMIN_CALLERS", []string{"orchestrator"}),
	}
	if c.CatalogTimeout <= 0 {
		e.Invalid("CATALOG_TIMEOUT", "must be positive")
	}
	c.OutboxKeys, c.DevOutboxKeys = e.Keyring("OUTBOX_KEYS", "OUTBOX_ACTIVE_KEY", config.DevEncryptionKeys)
	return c, e.Err()
}
