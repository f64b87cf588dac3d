// Command orchestrator runs the saga orchestrator: it starts the order saga
// from order.created.v1 events and drives payment, inventory and order over
// gRPC, persisting every transition in its own PostgreSQL database
// (SagaService for operators). See README.md.
package main

import (
	"context"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/reseal"
	"github.com/goodgo/goodgo/platform/saga"
	"github.com/goodgo/goodgo/platform/servicedb"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// `orchestrator migrate` only migrates the database, as its owner: a
// migration job. `orchestrator reseal` seals the saga contexts, parked
// payloads and stored replies under the active keys: a key rotation's last
// step.
func main() {
	lifecycle.Main("orchestrator", loadConfig, run, servicedb.Command("orchestrator", db.Orchestrator),
		reseal.Command("orchestrator", true, sagaContexts, parkedEvents))
}

var (
	// sagaContexts are the saga contexts (SAGA_CONTEXT_KEYS).
	sagaContexts = reseal.Target{Name: "sagas.context", Run: func(ctx context.Context, s reseal.Stores) (keyring.ResealStats, error) {
		return saga.ResealContexts(ctx, s.Pool, s.SagaContext)
	}}
	// parkedEvents are the payloads of the inbox's parked events (PII_KEYS).
	parkedEvents = reseal.Target{Name: "inbox_parked.payload", Run: func(ctx context.Context, s reseal.Stores) (keyring.ResealStats, error) {
		return inbox.ResealParked(ctx, s.Pool, s.PII)
	}}
)
