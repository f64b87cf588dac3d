// Package failpoint kills the process at a named place in the code, for the
// crash matrix (e2e TestCrashMatrix, `make chaos`).
//
// Hit(name) is an empty, inlined function unless the binary is built with
// the build tag failpoints. With the tag, the environment variable
// GOODGO_FAILPOINTS arms points as a comma-separated list of name=N: the
// process sends itself SIGKILL on the Nth Hit of that name (N ≥ 1), so no
// deferred function, no shutdown hook and no buffered write runs, as when a
// machine loses power. Example:
//
//	GOODGO_FAILPOINTS=payment.process.after-commit=3
//
// The points, named <binary>.<place>:
//
//	order.place.after-commit          PlaceOrder: order and outbox row committed, before the reply
//	payment.process.mid-request       ProcessPayment: idempotency key claimed, before the database write
//	payment.process.after-commit      ProcessPayment: payment and outbox row committed, before the reply
//	inventory.reserve.mid-request     ReserveStock: idempotency key claimed, before the database write
//	inventory.reserve.after-commit    ReserveStock: reservation and outbox row committed, before the reply
//	outbox-relay.publish.after-publish a batch written to Kafka, before its rows are marked published
//	outbox-relay.publish.mid-batch    a batch claimed, before it is written to Kafka
//	orchestrator.saga.after-step-call a step's remote call returned, before its outcome is stored
//	orchestrator.inbox.after-apply    an event's effect committed, before the Kafka offset is committed
package failpoint

// Env is the environment variable that arms failpoints.
const Env = "GOODGO_FAILPOINTS"
