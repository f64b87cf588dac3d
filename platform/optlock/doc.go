// Package optlock implements optimistic concurrency control for aggregates
// that carry a `version` column (DESIGN.md "Optimistic locking").
//
// A repository updates with `UPDATE … SET …, version = version + 1
// WHERE id = $1 AND version = $2`; zero rows updated means somebody else
// won, and the repository returns an error wrapping [ErrConflict].
//
//   - Internal writers (consumers, saga steps) re-read and retry with [Retry]:
//     exponential backoff with full jitter, a bounded number of attempts.
//   - Clients never send a raw version. Reads hand out an opaque token from
//     [Signer.Token]; updates present it and the server recovers the version
//     with [Signer.Verify]. A forged token fails with [ErrInvalidToken]; a
//     stale one passes verification and then loses the conditional UPDATE.
//     Both are reported to the client as a conflict (codes.Aborted).
//   - [Metrics] exports the seed's optimistic_lock_* series; both paths record
//     every conditional update through it (a win or a conflict; other errors
//     are not attempts), so the conflict-rate alert sees all writers.
package optlock
