// Command order runs the order service: the write side of orders
// (OrderService over gRPC), with an outbox of order events in its own
// PostgreSQL database and idempotency keys in Redis. See README.md.
package main

import (
	"context"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/reseal"
	"github.com/goodgo/goodgo/platform/servicedb"
	orderpg "github.com/goodgo/goodgo/services/order/internal/postgres"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// `order migrate` only migrates the database, as its owner: a migration
// job. `order reseal` seals the stored addresses and replies under the
// active PII key: a key rotation's last step. `order migrate-read-model`
// migrates the read database (CQRS) as `migrate` does the write one, and
// `order rebuild-read-model` rebuilds its view without downtime.
func main() {
	lifecycle.Main("order", loadConfig, run, servicedb.Command("order", db.Order),
		reseal.Command("order", false, addresses), migrateReadCommand(), rebuildCommand())
}

// addresses are the orders' shipping addresses.
var addresses = reseal.Target{Name: "orders.shipping_address", Run: func(ctx context.Context, s reseal.Stores) (keyring.ResealStats, error) {
	repo, err := orderpg.NewRepository(s.Pool, nil, s.PII)
	if err != nil {
		return keyring.ResealStats{}, err
	}
	return repo.Reseal(ctx)
}}
