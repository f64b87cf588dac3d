// Command inventory runs the inventory service: the catalog, stock and
// stock reservations (InventoryService over gRPC), with an outbox of
// inventory events in its own PostgreSQL database and idempotency keys in
// Redis. See README.md.
package main

import (
	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/reseal"
	"github.com/goodgo/goodgo/platform/servicedb"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// `inventory migrate` only migrates the database, as its owner: a migration job.
func main() {
	lifecycle.Main("inventory", loadConfig, run, servicedb.Command("inventory", db.Inventory), reseal.Command("inventory", false))
}
