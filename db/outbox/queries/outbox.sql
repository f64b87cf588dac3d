-- name: InsertEvents :exec
-- InsertEvents appends one outbox row per element of the parallel arrays
-- (all of one length), in array order: set-returning functions in a select
-- list advance in lockstep and feed the insert row by row, so events of one
-- aggregate appended together get increasing ids. Values shared by every
-- event of one Append (content type, trace context, occurred-at) are
-- scalars. One statement, so the statement-level trigger sends one NOTIFY.
INSERT INTO outbox (
    event_id, lane, topic, aggregate_type, aggregate_id, aggregate_version,
    event_type, payload, key_id, content_type, traceparent, tracestate, occurred_at
)
SELECT
    unnest(sqlc.arg(event_ids)::uuid[]),
    unnest(sqlc.arg(lanes)::smallint[]),
    unnest(sqlc.arg(topics)::text[]),
    unnest(sqlc.arg(aggregate_types)::text[]),
    unnest(sqlc.arg(aggregate_ids)::text[]),
    unnest(sqlc.arg(aggregate_versions)::bigint[]),
    unnest(sqlc.arg(event_types)::text[]),
    unnest(sqlc.arg(payloads)::bytea[]),
    unnest(sqlc.arg(key_ids)::text[]),
    sqlc.arg(content_type)::text,
    sqlc.arg(traceparent)::text,
    sqlc.arg(tracestate)::text,
    sqlc.arg(occurred_at)::timestamptz;

-- name: CopyEvents :copyfrom
-- CopyEvents appends outbox rows with the COPY protocol, in slice order.
-- The alternative to InsertEvents measured by BenchmarkAppend; COPY fires
-- the statement-level NOTIFY trigger as INSERT does.
INSERT INTO outbox (
    event_id, lane, topic, aggregate_type, aggregate_id, aggregate_version,
    event_type, payload, key_id, content_type, traceparent, tracestate, occurred_at
) VALUES (
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13
);
