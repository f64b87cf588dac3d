-- name: InsertSaga :one
-- InsertSaga creates a saga leased to its creator, with the step rows and
-- audit rows of its first transition (parallel arrays, one element per
-- row), in one statement. A saga of the same type and correlation id that
-- already exists wins: nothing is written and no row is returned.
-- Durations here and below are milliseconds added to the database clock,
-- written sqlc.arg(x): sqlc v1.31 mis-rewrites @x before "* interval".
WITH saga AS (
    INSERT INTO sagas (
        id, saga_type, correlation_id, state, cursor, context, key_id, started_by,
        traceparent, tracestate, deadline, lease_owner, lease_until
    ) VALUES (
        @id, @saga_type, @correlation_id, 'RUNNING', @cursor, @context, @key_id, @started_by,
        @traceparent, @tracestate, now() + sqlc.arg(deadline_ms)::bigint * interval '1 millisecond', @lease_owner,
        now() + sqlc.arg(lease_ms)::bigint * interval '1 millisecond'
    )
    ON CONFLICT (saga_type, correlation_id) DO NOTHING
    RETURNING sagas.id, sagas.version, sagas.created_at, sagas.deadline
), steps AS (
    INSERT INTO saga_steps (saga_id, name, phase, group_index, status, attempts, last_error, permanent, ended_at)
    SELECT saga.id, u.name, u.phase, u.group_index, u.status, u.attempts, u.last_error, u.permanent,
           CASE WHEN u.status = 'RUNNING' THEN NULL ELSE now() END
    FROM saga, (
        SELECT unnest(@step_names::text[]) AS name,
               unnest(@step_phases::text[]) AS phase,
               unnest(@step_groups::int[]) AS group_index,
               unnest(@step_statuses::text[]) AS status,
               unnest(@step_attempts::int[]) AS attempts,
               unnest(@step_errors::text[]) AS last_error,
               unnest(@step_permanent::bool[]) AS permanent
    ) AS u
    RETURNING 1
), audit AS (
    INSERT INTO saga_audit (saga_id, actor, action, detail)
    SELECT saga.id, a.actor, a.action, a.detail::jsonb
    FROM saga, (
        SELECT unnest(@audit_actors::text[]) AS actor,
               unnest(@audit_actions::text[]) AS action,
               unnest(@audit_details::text[]) AS detail
    ) AS a
    RETURNING 1
)
SELECT saga.id, saga.version, saga.created_at, saga.deadline FROM saga;

-- name: ApplyTransition :one
-- ApplyTransition is every engine write after the insert: it updates the
-- saga row if, and only if, the caller still holds it (same version, same
-- lease owner), upserts the changed step rows and appends audit rows, all
-- in one statement. No row returned means the caller lost the saga (a
-- takeover or an operator bumped the version) and must stop. release gives
-- the lease up (terminal state, or a persisted backoff of delay_ms);
-- otherwise the lease is extended by lease_ms. Indexed columns (state,
-- next_run_at) change only when they must, so that most transitions are
-- HOT updates that touch no index.
WITH saga AS (
    UPDATE sagas SET
        state = @state,
        cursor = @cursor,
        failure_reason = @failure_reason,
        next_run_at = CASE WHEN sqlc.arg(delay_ms)::bigint > 0
                           THEN now() + sqlc.arg(delay_ms)::bigint * interval '1 millisecond'
                           ELSE sagas.next_run_at END,
        lease_owner = CASE WHEN @release::bool THEN '' ELSE sagas.lease_owner END,
        lease_until = CASE WHEN @release::bool THEN now()
                           ELSE now() + sqlc.arg(lease_ms)::bigint * interval '1 millisecond' END,
        compensation_started_at = CASE
            WHEN @state = 'COMPENSATING' AND sagas.state = 'RUNNING' THEN now()
            ELSE sagas.compensation_started_at END,
        ended_at = CASE WHEN @state IN ('COMPLETED', 'COMPENSATED') THEN now() END,
        version = sagas.version + 1,
        updated_at = now()
    WHERE sagas.id = @id AND sagas.version = @version AND sagas.lease_owner = @lease_owner
    RETURNING sagas.id, sagas.version, sagas.compensation_started_at
), steps AS (
    INSERT INTO saga_steps AS st (saga_id, name, phase, group_index, status, attempts, last_error, permanent, ended_at)
    SELECT saga.id, u.name, u.phase, u.group_index, u.status, u.attempts, u.last_error, u.permanent,
           CASE WHEN u.status = 'RUNNING' THEN NULL ELSE now() END
    FROM saga, (
        SELECT unnest(@step_names::text[]) AS name,
               unnest(@step_phases::text[]) AS phase,
               unnest(@step_groups::int[]) AS group_index,
               unnest(@step_statuses::text[]) AS status,
               unnest(@step_attempts::int[]) AS attempts,
               unnest(@step_errors::text[]) AS last_error,
               unnest(@step_permanent::bool[]) AS permanent
    ) AS u
    ON CONFLICT (saga_id, name, phase) DO UPDATE SET
        status = EXCLUDED.status,
        attempts = EXCLUDED.attempts,
        last_error = EXCLUDED.last_error,
        permanent = EXCLUDED.permanent,
        updated_at = now(),
        ended_at = EXCLUDED.ended_at
    RETURNING 1
), audit AS (
    INSERT INTO saga_audit (saga_id, actor, action, detail)
    SELECT saga.id, a.actor, a.action, a.detail::jsonb
    FROM saga, (
        SELECT unnest(@audit_actors::text[]) AS actor,
               unnest(@audit_actions::text[]) AS action,
               unnest(@audit_details::text[]) AS detail
    ) AS a
    RETURNING 1
)
SELECT saga.id, saga.version, saga.compensation_started_at FROM saga;

-- name: ClaimDueSagas :many
-- ClaimDueSagas leases up to max_sagas active sagas that are due and whose
-- lease has expired (their replica crashed, stopped or gave them up) to
-- owner, bumping their version so that a former owner's writes fail.
-- SKIP LOCKED lets replicas claim side by side without waiting on each
-- other. Each claim is audited with the previous owner.
WITH due AS (
    SELECT sagas.id, sagas.lease_owner AS previous_owner
    FROM sagas
    WHERE sagas.state IN ('RUNNING', 'COMPENSATING')
      AND sagas.next_run_at <= now()
      AND sagas.lease_until < now()
    ORDER BY sagas.next_run_at
    LIMIT @max_sagas
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE sagas SET
        lease_owner = @owner,
        lease_until = now() + sqlc.arg(lease_ms)::bigint * interval '1 millisecond',
        version = sagas.version + 1,
        updated_at = now()
    FROM due
    WHERE sagas.id = due.id
    RETURNING sagas.id, due.previous_owner
), audit AS (
    INSERT INTO saga_audit (saga_id, actor, action, detail)
    SELECT claimed.id, @owner, 'saga.claimed', jsonb_build_object('previous_owner', claimed.previous_owner)
    FROM claimed
    RETURNING 1
)
SELECT claimed.id FROM claimed;

-- name: ClaimSaga :one
-- ClaimSaga is ClaimDueSagas for one saga: an operator's retry or abort
-- makes it due at once, and the replica that served the call claims it.
-- No row: the saga is not due, not active, or leased to another replica.
WITH due AS (
    SELECT sagas.id, sagas.lease_owner AS previous_owner
    FROM sagas
    WHERE sagas.id = @id
      AND sagas.state IN ('RUNNING', 'COMPENSATING')
      AND sagas.next_run_at <= now()
      AND sagas.lease_until < now()
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE sagas SET
        lease_owner = @owner,
        lease_until = now() + sqlc.arg(lease_ms)::bigint * interval '1 millisecond',
        version = sagas.version + 1,
        updated_at = now()
    FROM due
    WHERE sagas.id = due.id
    RETURNING sagas.id, due.previous_owner
), audit AS (
    INSERT INTO saga_audit (saga_id, actor, action, detail)
    SELECT claimed.id, @owner, 'saga.claimed', jsonb_build_object('previous_owner', claimed.previous_owner)
    FROM claimed
    RETURNING 1
)
SELECT claimed.id FROM claimed;

-- name: RenewLeases :many
-- RenewLeases extends the leases owner still holds among ids and returns
-- those ids; an id missing from the result was lost. It does not bump the
-- version: renewing is not a transition.
UPDATE sagas SET lease_until = now() + sqlc.arg(lease_ms)::bigint * interval '1 millisecond'
WHERE lease_owner = @owner AND id = ANY(@ids::uuid[])
RETURNING id;

-- name: ReleaseLeases :exec
-- ReleaseLeases gives up owner's leases among ids so that another replica
-- claims them at once (graceful stop). The next owner runs the interrupted
-- steps again with the same idempotency keys.
UPDATE sagas SET lease_owner = '', lease_until = now()
WHERE lease_owner = @owner AND id = ANY(@ids::uuid[]);

-- name: GetSaga :one
-- GetSaga reads one saga.
SELECT * FROM sagas WHERE id = @id;

-- name: GetSagas :many
-- GetSagas reads the sagas of ids (claimed ones), in no particular order.
SELECT * FROM sagas WHERE id = ANY(@ids::uuid[]);

-- name: FindSagaByCorrelation :one
-- FindSagaByCorrelation reads the saga of a type for a business key.
SELECT * FROM sagas WHERE saga_type = @saga_type AND correlation_id = @correlation_id;

-- name: ListSagas :many
-- ListSagas lists sagas newest first, optionally of one state, of one
-- correlation id, started by one user and created before a time, after a
-- keyset cursor (the last row of the previous page).
SELECT * FROM sagas
WHERE (@state::text = '' OR state = @state::text)
  AND (@correlation_id::text = '' OR correlation_id = @correlation_id::text)
  AND (@started_by::text = '' OR started_by = @started_by::text)
  AND (sqlc.narg(created_before)::timestamptz IS NULL OR created_at < sqlc.narg(created_before)::timestamptz)
  AND (sqlc.narg(after_created_at)::timestamptz IS NULL
       OR (created_at, id) < (sqlc.narg(after_created_at)::timestamptz, sqlc.narg(after_id)::uuid))
ORDER BY created_at DESC, id DESC
LIMIT @page_limit;

-- name: UpdateSagaByOperator :one
-- UpdateSagaByOperator moves a saga to state for an operator (retry of a
-- parked saga, abort of a running one) if it is still at version: the
-- compensation clock restarts, the saga is due at once and its lease is
-- revoked (the holder's renewals and writes then fail and it stops). One
-- audit row names the operator.
WITH saga AS (
    UPDATE sagas SET
        state = @state,
        failure_reason = @failure_reason,
        next_run_at = now(),
        lease_owner = '',
        lease_until = now(),
        compensation_started_at = now(),
        version = sagas.version + 1,
        updated_at = now()
    WHERE sagas.id = @id AND sagas.version = @version
    RETURNING sagas.id
), audit AS (
    INSERT INTO saga_audit (saga_id, actor, action, detail)
    SELECT saga.id, @actor, @action, @detail::jsonb FROM saga
    RETURNING 1
)
SELECT saga.id FROM saga;

-- name: CountSagasByState :one
-- CountSagasByState counts the sagas that are not finished: pending
-- (RUNNING or COMPENSATING) and parked.
SELECT
    count(*) FILTER (WHERE state IN ('RUNNING', 'COMPENSATING'))::bigint AS pending,
    count(*) FILTER (WHERE state = 'PARKED')::bigint AS parked
FROM sagas
WHERE state IN ('RUNNING', 'COMPENSATING', 'PARKED');

-- name: ListSagaContexts :many
-- ListSagaContexts pages through every saga's sealed context in id order,
-- after the id given (the nil UUID to start): the reseal command's scan.
SELECT id, context, key_id
FROM sagas
WHERE id > @after
ORDER BY id
LIMIT @page_size;

-- name: ResealSagaContext :execrows
-- ResealSagaContext replaces a context sealed as read with the same context
-- sealed under another key. The context never changes after the saga
-- starts, so this races only another reseal; it leaves version alone, so
-- the engine's fenced writes are not disturbed.
UPDATE sagas
SET context = @sealed, key_id = @key_id
WHERE id = @id AND key_id = @read_key_id AND context = @read_sealed;
