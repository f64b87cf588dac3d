// Package saga is a durable saga orchestration engine on PostgreSQL
// (DESIGN.md "Saga orchestration"). A saga type is a Definition: ordered
// groups of steps, each step an action and its compensation with a timeout
// and a retry policy; the steps of a group run in parallel. The order saga
// of the orchestrator is one Definition; the engine knows nothing of
// orders, payments or gRPC.
//
// # Storage
//
// Three tables (canonical DDL in db/saga/schema/saga.sql, copied into the
// migrations of every service that runs the engine): sagas (one row per
// instance: state, cursor, sealed context, deadline, lease, version),
// saga_steps (one row per step and phase: status, attempts, last error) and
// saga_audit (append-only: who did what, when).
//
// Every write of the engine is one SQL statement, so one commit: it updates
// the saga row guarded by
//
//	WHERE id = $1 AND version = $2 AND lease_owner = $3
//
// upserts the step rows that changed and appends audit rows. A step costs
// one write before its call (step RUNNING, attempts + 1) and the result is
// written with the next step's "before" (or with the saga's outcome): a
// saga of n sequential steps costs n + 1 writes, the first of which is the
// insert made by Start. On a pool, the writes of concurrent executions go
// out together (postgres.Group): one round trip and one commit for all of
// them, each execution still returning only once its own write committed.
// The lease renewal waits for the batches in flight and they for it: a
// batch holds several sagas' rows until it commits, and the renewal's one
// statement locks them in an order of its own.
//
// # Leases and replicas
//
// Start inserts a saga leased to the calling replica and executes it at
// once on a worker of that replica (Options.Workers bound them). While it
// works, the replica renews all its leases in one statement every
// LeaseTTL/3, however long a step takes. Run's recovery loop claims, every
// PollInterval and with FOR UPDATE SKIP LOCKED, active sagas that are due
// and whose lease has expired: sagas of a crashed or stopped replica, sagas
// whose persisted backoff is over, sagas an operator retried or aborted.
// With the defaults (LeaseTTL 3 s, PollInterval 500 ms) a crashed
// replica's sagas resume elsewhere 2 to 3.5 s after the crash; a stopped
// replica releases its leases and they resume at once. No leader is needed.
//
// A claim bumps the version, so the replica that lost the lease (a long GC
// pause, a network partition) finds its next write matching no row and
// stops; its renewals fail the same way. Before that, it fences itself: an
// execution whose lease was last extended (by a write or a renewal sent at
// time t) more than 5/6 LeaseTTL ago is stopped and its call in flight
// cancelled, because the database's lease ends no earlier than t + LeaseTTL
// and another replica may claim it then. So two replicas never call the
// steps of one saga at the same time; a call the callee still finishes
// after its caller gave up is absorbed by the step's idempotency key.
//
// # Crashes
//
// A step's RUNNING row is committed before its call. After a crash the
// next owner finds it and calls the step again, with the same idempotency
// key (Execution.IdempotencyKey: saga id, step, compensation marker): the
// service replays or deduplicates it, so nothing is skipped and nothing is
// done twice. Step functions must therefore be idempotent under that key.
//
// # Failures
//
// A step's error says what is known of its effect. An error wrapped with
// Permanent is a refusal the service documents as doing nothing (payment
// declined, not enough stock): the saga compensates at once, and the
// refused step is not compensated. Every other error (Internal, a timeout,
// a lost reply) leaves the outcome unknown: the action is retried with the
// same key within the step's RetryPolicy and the saga deadline — by
// default until the deadline (RetryPolicy.MaxElapsed UntilDeadline), so a
// neighbour that restarts within it never makes the saga give up; a
// shorter MaxElapsed is a per-step time budget, and MaxAttempts the least
// number of calls before the step may give up on it. If the saga
// turns back instead, that step is compensated too, directly — its action
// is never called again, since that could only make happen what the saga
// is undoing. Compensations must therefore be safe for an action that never
// took effect and absorbing for one still in flight (a refund of a payment
// that does not exist records it VOIDED, so a late charge is a no-op).
// Compensation runs from the failed group back to the first, last step
// first, and retries every error with capped backoff (waits above
// InlineRetryWait are persisted and the saga is released meanwhile) until
// it succeeds or CompensationLimit has passed; the saga is then PARKED for
// an operator (Retry). A Pivot step marks the point of no return: once it
// has started, its unknown outcomes are retried until known, and only its
// own Permanent refusal turns the saga back.
//
// The saga deadline (Options.Deadline, 30 s by default) bounds each call and
// the saga as a whole; a saga that reaches it compensates and is counted in
// saga_timeout_total.
//
// # Security and observability
//
// The saga context is sealed with platform/keyring (AES-256-GCM, key id
// stored, the saga id as additional data) and opened only in memory.
// Options.Authorize checks the starting user before every action. Every
// transition and every claim is audited. Each call is a span
// saga.step.<name> (attributes saga.id, saga.step, saga.attempt,
// saga.phase) continuing the trace that was current when the saga started,
// on whichever replica runs it; log lines carry saga_id and that trace id.
// Metrics are listed on the metrics type.
package saga
