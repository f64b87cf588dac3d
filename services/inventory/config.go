package main

import (
	"github.com/goodgo/goodgo/platform/bootstrap"
	"github.com/goodgo/goodgo/platform/config"
)

// Config is the inventory service's configuration, read once from the
// environment by loadConfig. Every variable has a default that works on a
// developer machine.
type Config struct {
	// Shared with order and payment: GRPC_ADDR (127.0.0.1:50053),
	// HTTP_ADDR (127.0.0.1:9103), DATABASE_URL (goodgo_inventory; migrating
	// it also seeds the demo catalog), Redis, idempotency, VERSION_TOKEN_*
	// and OUTBOX_* (see bootstrap.DomainConfig).
	bootstrap.DomainConfig
}

// loadConfig reads the configuration through lookup (os.LookupEnv in main).
// The error names every bad variable, one "NAME: problem" line each.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	e := config.NewEnv(lookup)
	c := Config{
		DomainConfig: bootstrap.LoadDomainConfig(e, "inventory", "127.0.0.1:50053", "127.0.0.1:9103"),
	}
	return c, e.Err()
}
