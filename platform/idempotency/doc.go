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
// An in-progress claim expires after [Options.LockTTL] (60 s by default) so
// that a crashed server does not block a key for a day. So that a claim
// cannot expire under a handler that is still running (a retry could then
// run the operation a second time), the handler's context ends
// LockTTL - StoreTimeout - [LockMargin] (57 s by default) after the claim was
// requested, leaving StoreTimeout to store the outcome and LockMargin for
// round trips and clock drift. A handler that ignores its context can still
// outlive its claim. That, a lost Redis, or a flushed key are why Redis is
// only the fast path: operations with money or stock also carry a unique
// constraint in their own database.
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
//	idempotency_redis_errors_total                    failed store operations
//	idempotency_key_ttl_seconds                       configured TTL of completed keys
//
// The seed describes idempotency_key_ttl_seconds as the average key TTL;
// every completed key gets the same configured TTL, so the gauge reports it.
package idempotency
