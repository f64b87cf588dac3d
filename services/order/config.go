package main

import (
	"time"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/domainservice"
)

// Config is the order service's configuration, read once from the
// environment by loadConfig. Every variable has a default that works on a
// developer machine.
type Config struct {
	// Shared with payment and inventory: GRPC_ADDR (127.0.0.1:50051),
	// HTTP_ADDR (127.0.0.1:9101), DATABASE_URL (goodgo_order), Redis,
	// idempotency, VERSION_TOKEN_* and OUTBOX_* (see domainservice.Config).
	// OUTBOX_KEYS must match the outbox-relay's, which decrypts the PII
	// events this service writes.
	domainservice.Config

	// InventoryAddr is the gRPC target of the inventory service, which owns
	// the catalog (INVENTORY_ADDR).
	InventoryAddr string
	// CatalogTimeout bounds one catalog read during PlaceOrder
	// (CATALOG_TIMEOUT, default 2s).
	CatalogTimeout time.Duration
}

// loadConfig reads the configuration through lookup (os.LookupEnv in main).
// The error names every bad variable, one "NAME: problem" line each.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	e := config.NewEnv(lookup)
	c := Config{
		Config:         domainservice.LoadConfig(e, "order", "127.0.0.1:50051", "127.0.0.1:9101"),
		InventoryAddr:  e.String("INVENTORY_ADDR", "127.0.0.1:50053"),
		CatalogTimeout: e.Duration("CATALOG_TIMEOUT", 2*time.Second),
	}
	if c.CatalogTimeout <= 0 {
		e.Invalid("CATALOG_TIMEOUT", "must be positive")
	}
	return c, e.Err()
}
