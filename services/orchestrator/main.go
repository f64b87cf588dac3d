// Command orchestrator runs the saga orchestrator: it starts the order saga
// from order.created.v1 events and drives payment, inventory and order over
// gRPC, persisting every transition in its own PostgreSQL database
// (SagaService for operators). See README.md.
package main

import (
	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/reseal"
	"github.com/goodgo/goodgo/platform/servicedb"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// `orchestrator migrate` only migrates the database, as its owner: a migration job.
func main() {
	lifecycle.Main("orchestrator", loadConfig, run, servicedb.Command("orchestrator", db.Orchestrator),
		reseal.Command("orchestrator", true, reseal.SagaContexts, reseal.ParkedEvents))
}
