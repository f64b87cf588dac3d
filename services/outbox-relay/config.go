package main

import (
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/keyring"
)

// Config is the relay's configuration, read once from the environment by
// loadConfig. Every variable has a default that works on a developer machine.
type Config struct {
	// Common: GRPC_ADDR (127.0.0.1:50055, health only), HTTP_ADDR
	// (127.0.0.1:9095), LOG_LEVEL, SHUTDOWN_TIMEOUT, STARTUP_TIMEOUT.
	config.Common
	// OutboxDatabaseURLs are the databases whose outbox tables the relay
	// drains (OUTBOX_DATABASE_URLS, comma-separated).
	OutboxDatabaseURLs []string
	// KafkaBrokers are the bootstrap brokers (KAFKA_BROKERS, comma-separated).
	KafkaBrokers []string
	// OutboxKeys open PII payloads sealed by the writers (OUTBOX_KEYS,
	// OUTBOX_ACTIVE_KEY): every key a writer may have used must be here.
	OutboxKeys config.KeySet
}

// loadConfig reads the configuration through lookup (os.LookupEnv in main).
// The error names every bad variable, one "NAME: problem" line each.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	e := config.NewEnv(lookup)
	c := Config{
		Common: config.LoadCommon(e, "outbox-relay", "127.0.0.1:50055", "127.0.0.1:9095"),
		OutboxDatabaseURLs: e.List("OUTBOX_DATABASE_URLS", []string{
			"postgres://postgres@127.0.0.1:5432/goodgo_order?sslmode=disable",
			"postgres://postgres@127.0.0.1:5432/goodgo_payment?sslmode=disable",
			"postgres://postgres@127.0.0.1:5432/goodgo_inventory?sslmode=disable",
		}),
		KafkaBrokers: e.List("KAFKA_BROKERS", []string{"127.0.0.1:9092"}),
		OutboxKeys:   e.KeySet("OUTBOX_KEYS", "OUTBOX_ACTIVE_KEY", config.DevEncryptionKeys, keyring.KeySize),
	}
	if len(c.OutboxDatabaseURLs) == 0 {
		e.Invalid("OUTBOX_DATABASE_URLS", "at least one database URL is required")
	}
	if len(c.KafkaBrokers) == 0 {
		e.Invalid("KAFKA_BROKERS", "at least one broker is required")
	}
	return c, e.Err()
}
