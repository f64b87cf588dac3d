package main

import (
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/keyring"
)

// Config is the orchestrator's configuration, read once from the environment
// by loadConfig. Every variable has a default that works on a developer
// machine.
type Config struct {
	// Common: GRPC_ADDR (127.0.0.1:50054), HTTP_ADDR (127.0.0.1:9094),
	// LOG_LEVEL, SHUTDOWN_TIMEOUT, STARTUP_TIMEOUT.
	config.Common
	// DatabaseURL is the orchestrator's own database (DATABASE_URL): saga
	// state, step log, audit and inbox. Created if missing, migrated at start.
	DatabaseURL string
	// KafkaBrokers are the bootstrap brokers (KAFKA_BROKERS, comma-separated).
	KafkaBrokers []string
	// OrderAddr, PaymentAddr and InventoryAddr are the services the saga
	// steps call (ORDER_ADDR, PAYMENT_ADDR, INVENTORY_ADDR).
	OrderAddr, PaymentAddr, InventoryAddr string
	// ContextKeys encrypt the saga context at rest (SAGA_CONTEXT_KEYS
	// "kid:base64,…" of 32-byte AES-256 keys; SAGA_CONTEXT_ACTIVE_KEY).
	ContextKeys config.KeySet
}

// loadConfig reads the configuration through lookup (os.LookupEnv in main).
// The error names every bad variable, one "NAME: problem" line each.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	e := config.NewEnv(lookup)
	c := Config{
		Common:        config.LoadCommon(e, "orchestrator", "127.0.0.1:50054", "127.0.0.1:9094"),
		DatabaseURL:   e.URL("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/goodgo_orchestrator?sslmode=disable", "postgres", "postgresql"),
		KafkaBrokers:  e.List("KAFKA_BROKERS", []string{"127.0.0.1:9092"}),
		OrderAddr:     e.HostPort("ORDER_ADDR", "127.0.0.1:50051"),
		PaymentAddr:   e.HostPort("PAYMENT_ADDR", "127.0.0.1:50052"),
		InventoryAddr: e.HostPort("INVENTORY_ADDR", "127.0.0.1:50053"),
		ContextKeys:   e.KeySet("SAGA_CONTEXT_KEYS", "SAGA_CONTEXT_ACTIVE_KEY", config.DevEncryptionKeys, keyring.KeySize),
	}
	return c, e.Err()
}
