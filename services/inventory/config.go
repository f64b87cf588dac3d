package main

import (
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/keyring"
)

// Config is the inventory service's configuration, read once from the
// environment by loadConfig. Every variable has a default that works on a
// developer machine.
type Config struct {
	// Common: GRPC_ADDR (127.0.0.1:50053), HTTP_ADDR (127.0.0.1:9103),
	// LOG_LEVEL, SHUTDOWN_TIMEOUT, STARTUP_TIMEOUT.
	config.Common

	// DatabaseURL is the inventory's own PostgreSQL database (DATABASE_URL);
	// it is created if missing and migrated at start, which also seeds the
	// demo catalog. Pool size: the pool_max_conns URL parameter (default 10).
	DatabaseURL string
	// Redis holds the idempotency keys (REDIS_URL, REDIS_ADDRS).
	Redis config.Redis
	// Idempotency tunes the idempotency keys (IDEMPOTENCY_TTL,
	// IDEMPOTENCY_KEY_PREFIX).
	Idempotency config.Idempotency
	// VersionTokens sign and verify version tokens, by key id
	// (VERSION_TOKEN_KEYS "kid:base64,…", keys of at least 32 bytes;
	// VERSION_TOKEN_ACTIVE_KEY signs, default the only key id). Unset, the
	// public development key is used and run logs a warning.
	VersionTokens config.KeySet
	// OutboxKeys seals PII event payloads (OUTBOX_KEYS "kid:base64,…" of
	// 32-byte AES-256 keys; OUTBOX_ACTIVE_KEY, default the only key id).
	// No inventory event carries personal data today; the keyring is
	// configured like every service's so that one never goes out in clear.
	OutboxKeys *keyring.Keyring
	// DevOutboxKeys reports that OUTBOX_KEYS was unset and the public
	// development key is in use.
	DevOutboxKeys bool
	// AdminCallers are the caller identities (x-user-id) allowed to run
	// AdjustStock (INVENTORY_ADMIN_CALLERS, comma-separated, default
	// "admin"); anyone else gets PermissionDenied.
	AdminCallers []string
}

// loadConfig reads the configuration through lookup (os.LookupEnv in main).
// The error names every bad variable, one "NAME: problem" line each.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	e := config.NewEnv(lookup)
	c := Config{
		Common:        config.LoadCommon(e, "inventory", "127.0.0.1:50053", "127.0.0.1:9103"),
		DatabaseURL:   e.URL("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/goodgo_inventory?sslmode=disable", "postgres", "postgresql"),
		Redis:         config.LoadRedis(e),
		Idempotency:   config.LoadIdempotency(e),
		VersionTokens: e.KeySet("VERSION_TOKEN_KEYS", "VERSION_TOKEN_ACTIVE_KEY", config.DevVersionTokenKeys, 32),
		AdminCallers:  e.List("INVENTORY_ADMIN_CALLERS", []string{"admin"}),
	}
	c.OutboxKeys, c.DevOutboxKeys = e.Keyring("OUTBOX_KEYS", "OUTBOX_ACTIVE_KEY", config.DevEncryptionKeys)
	return c, e.Err()
}
