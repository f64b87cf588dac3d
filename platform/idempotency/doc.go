// Package idempotency makes mutating gRPC calls safe to retry, with Stripe's
// semantics (DESIGN.md "Idempotency").
//
// Every guarded RPC requires an `idempotency-key` metadata entry: 1–255
// printable ASCII characters, chosen by the client, typically a UUID. The key
// is scoped by the verified caller (caller.Identity.Scope: "user:<id>" or
// "service:<name>") and full method name and hashed
// with SHA-256 ([Key]) before it reaches the [Store]; the handler can read the
// hash with [KeyFromContext] and keep it in its own unique column.
//
// For a guarded call the [Guard] interceptor:
//
//   - claims the key, storing the request's fingerprint (SHA-256 of its
//     deterministic protobuf encoding without unknown fields, so a client
//     with a newer schema, or a proxy dropping fields it does not know,
//     does not change it), runs the handler and stores the outcome for
//     [Options.TTL] (24 h by default);
//   - replays a completed outcome to a retry with the same key and the same
//     request: the same response message, or the same status (code, message,
//     details), without running the handler, and with the response header
//     `idempotent-replayed: true`;
//   - rejects the same key with a different request with FailedPrecondition
//     "idempotency-key was already used with a different request", never
//     running it;
//   - rejects a duplicate that arrives while the first is still running with
//     Aborted "a request with this idempotency-key is in progress; retry
//     later". This is a deliberate choice over waiting for the first result:
//     it holds no server resources per waiting duplicate and the client's
//     retry (Aborted is retryable) is then served the replay.
//
// Outcomes stored for replay are successes and deterministic business errors
// (InvalidArgument, AlreadyExists, FailedPrecondition, OutOfRange): running
// the request again would give the same answer. Every other outcome releases
// the key, so a retry with the same key runs again: the transient or unknown
// ones (Unavailable, Internal, DeadlineExceeded, Canceled, Aborted,
// ResourceExhausted, Unknown and the rest), and NotFound and
// PermissionDenied, whose answer can change (the resource is created, the
// permission granted).
//
// An in-progress claim is a lease of [Options.LockTTL] (5 s by default)
// that the Guard renews every LockTTL/3 while the handler runs and until
// its outcome is stored. A live holder therefore keeps its key however long
// it runs, and duplicates meanwhile get the Aborted "in progress" answer;
// the claim of a holder that died (kill -9, a lost node) expires at most
// LockTTL after its last renewal, so the caller's retry with the same key
// runs within seconds instead of finding the key blocked. (A fixed 60 s
// claim outlived the saga's 30 s deadline: a neighbour's short restart
// failed good orders.) The handler's context also ends after
// [Options.HandlerTimeout] (1 min by default).
//
// A claim can still be lost under a live holder: the process paused (GC,
// SIGSTOP, an overloaded host) or the store unreachable for longer than the
// lease. When a renewal finds the claim gone, or none has succeeded for 2/3
// of LockTTL, the loss is logged and counted and the handler's context is
// cancelled, leaving it the last third of the lease to stop before a retry
// can claim the key; a handler stopped that way answers Unavailable
// "idempotency claim lost before the request finished; retry". A
// RedisDownSafe method (below) is not cancelled: like a call that runs
// unguarded, it relies on its database. A handler that ignores its context,
// a paused process, a lost Redis, or a flushed key are why Redis is only
// the fast path: operations with money or stock also carry a unique
// constraint in their own database (payments.order_id,
// reservations.order_id, orders.idempotency_key), so a second run finds
// the first one's row.
//
// The owner token of a claim is chosen before the claim is sent, and a
// claim finding its own token is a successful claim: go-redis retries a
// command whose reply timed out, and the retry must not report the first
// attempt's claim as a concurrent request in progress.
//
// # When the store is unavailable
//
// Each guarded method has a [Policy]. With RedisDownSafe false (the default)
// a store error fails the call with Unavailable "idempotency store
// unavailable" and the handler does not run. Set RedisDownSafe only for an
// RPC whose own database constraint already makes a duplicate harmless (for
// example PlaceOrder with a unique orders.idempotency_key column, or
// payment.Process with one payment per order): the handler then runs
// unguarded, the error is logged and counted, and the database rejects the
// duplicate. Each service documents its choice per RPC where it builds the
// policy map.
//
// # Metrics
//
//	idempotency_checks_total{method}                  guarded calls checked against the store
//	idempotency_hits_total{method}                    duplicates answered with a replay
//	idempotency_conflicts_total{method,reason}        duplicates rejected: in_progress, fingerprint_mismatch
//	idempotency_redis_errors_total                    failed store operations (renewals included)
//	idempotency_leases_lost_total{method}             claims lost while their handler ran
//	idempotency_key_ttl_seconds                       configured TTL of completed keys
//
// The seed describes idempotency_key_ttl_seconds as the average key TTL;
// every completed key gets the same configured TTL, so the gauge reports it.
package idempotency
