package main

import (
	"fmt"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
)

// Config is the payment service's configuration, read once from the
// environment by loadConfig. Every variable has a default that works on a
// developer machine.
type Config struct {
	// Common: GRPC_ADDR (127.0.0.1:50052), HTTP_ADDR (127.0.0.1:9102),
	// LOG_LEVEL, SHUTDOWN_TIMEOUT, STARTUP_TIMEOUT.
	config.Common

	// DatabaseURL is the payment service's own PostgreSQL database
	// (DATABASE_URL); it is created if missing and migrated at start.
	DatabaseURL string
	// Redis holds the idempotency keys (REDIS_URL, REDIS_ADDRS).
	Redis config.Redis
	// Idempotency tunes the idempotency keys (IDEMPOTENCY_TTL,
	// IDEMPOTENCY_KEY_PREFIX).
	Idempotency config.Idempotency
	// DeclineAboveMinor declines every payment above this many minor units
	// (PAYMENT_DECLINE_ABOVE_MINOR, default 1000000; 0 disables the limit).
	// With the test card "tok_decline" it lets a client produce failed
	// payments on demand.
	DeclineAboveMinor int64
	// VersionTokens sign and verify version tokens, by key id
	// (VERSION_TOKEN_KEYS "kid:base64,…", keys of at least 32 bytes;
	// VERSION_TOKEN_ACTIVE_KEY signs, default the only key id). Unset, the
	// public development key is used and run logs a warning.
	VersionTokens config.KeySet
	// OutboxKeys would encrypt PII event payloads (OUTBOX_KEYS "kid:base64,…",
	// 32-byte AES-256 keys; OUTBOX_ACTIVE_KEY, default the only key id).
	// Payment events carry no PII today; the keyring is configured like in
	// every service so that a future PII event needs no new settings.
	OutboxKeys *keyring.Keyring
	// DevOutboxKeys reports that OUTBOX_KEYS was unset and the public
	// development key is in use.
	DevOutboxKeys bool
}

// loadConfig reads the configuration through lookup (os.LookupEnv in main).
// The error names every bad variable, one "NAME: problem" line each.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	e := config.NewEnv(lookup)
	c := Config{
		Common:            config.LoadCommon(e, "payment", "127.0.0.1:50052", "127.0.0.1:9102"),
		DatabaseURL:       e.URL("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/goodgo_payment?sslmode=disable", "postgres", "postgresql"),
		Redis:             config.LoadRedis(e),
		Idempotency:       config.LoadIdempotency(e),
		DeclineAboveMinor: int64(e.Int("PAYMENT_DECLINE_ABOVE_MINOR", payment.DefaultDeclineAboveMinor)),
		VersionTokens:     e.KeySet("VERSION_TOKEN_KEYS", "VERSION_TOKEN_ACTIVE_KEY", config.DevVersionTokenKeys, 32),
	}
	if c.DeclineAboveMinor < 0 {
		e.Invalid("PAYMENT_DECLINE_ABOVE_MINOR", fmt.Sprintf("must not be negative (got %d; 0 disables the limit)", c.DeclineAboveMinor))
	}
	c.OutboxKeys, c.DevOutboxKeys = e.Keyring("OUTBOX_KEYS", "OUTBOX_ACTIVE_KEY", config.DevEncryptionKeys)
	return c, e.Err()
}
