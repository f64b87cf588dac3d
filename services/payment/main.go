// Command payment runs the payment service: PaymentService over gRPC
// (capture, decline, refund; at most one payment per order), with an outbox
// of payment events in its own PostgreSQL database and idempotency keys in
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

// `payment migrate` only migrates the database, as its owner: a migration job.
func main() {
	lifecycle.Main("payment", loadConfig, run, servicedb.Command("payment", db.Payment), reseal.Command("payment", false))
}
