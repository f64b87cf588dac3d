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

-- The relay's queries. Lane leases live in outbox_lanes; durations are passed
-- in milliseconds so that no interval type crosses the wire.

-- name: SeedLanes :exec
-- SeedLanes creates lanes 0 … lanes-1 unowned; existing lanes are left as
-- they are, so every relay replica may run it at start.
INSERT INTO outbox_lanes (lane)
SELECT generate_series(0, sqlc.arg(lanes)::int - 1)
ON CONFLICT (lane) DO NOTHING;

-- name: RenewLanes :many
-- RenewLanes extends the lease of every lane owner still holds (expired or
-- not: a lane nobody else claimed is still its own) and returns them. A lane
-- another replica claimed after the lease expired is no longer returned.
UPDATE outbox_lanes
SET lease_until = now() + sqlc.arg(ttl_ms)::bigint * interval '1 millisecond'
WHERE owner = sqlc.arg(owner)
RETURNING lane;

-- name: ClaimLanes :many
-- ClaimLanes leases up to max_lanes lanes whose lease has expired (or that
-- were never leased or were released) to owner, except the lanes in
-- exclude (lanes owner handed over because it cannot publish them). SKIP
-- LOCKED keeps replicas claiming at the same moment from waiting on, or
-- taking, the same lanes; a lane claimed and committed by another replica
-- since this statement's snapshot is re-checked under the row lock and
-- skipped.
UPDATE outbox_lanes
SET owner = sqlc.arg(owner),
    lease_until = now() + sqlc.arg(ttl_ms)::bigint * interval '1 millisecond'
WHERE lane IN (
    SELECT l.lane FROM outbox_lanes l
    WHERE l.lease_until < now()
      AND NOT l.lane = ANY(COALESCE(sqlc.arg(exclude)::smallint[], '{}'))
    ORDER BY l.lane
    LIMIT sqlc.arg(max_lanes)
    FOR UPDATE SKIP LOCKED
)
RETURNING lane;

-- name: ClaimGivenLanes :many
-- ClaimGivenLanes leases to owner those of lanes whose lease has expired or
-- was released: lanes another replica hands over because it lacks the key
-- of their next event, taken by a replica that holds it whatever its share.
UPDATE outbox_lanes
SET owner = sqlc.arg(owner),
    lease_until = now() + sqlc.arg(ttl_ms)::bigint * interval '1 millisecond'
WHERE lane IN (
    SELECT l.lane FROM outbox_lanes l
    WHERE l.lease_until < now()
      AND l.lane = ANY(sqlc.arg(lanes)::smallint[])
    ORDER BY l.lane
    FOR UPDATE SKIP LOCKED
)
RETURNING lane;

-- name: LeaseHolders :many
-- LeaseHolders lists the replicas other than owner that hold an unexpired
-- lease, each with the time left on its earliest one: a survivor claims a
-- dead replica's lanes the moment they expire.
SELECT owner, EXTRACT(EPOCH FROM min(lease_until) - now())::float8 AS expires_in_seconds
FROM outbox_lanes
WHERE lease_until > now() AND owner <> '' AND owner <> sqlc.arg(owner)
GROUP BY owner;

-- name: ReleaseLanes :exec
-- ReleaseLanes gives up owner's lease on lanes at once, so that another
-- replica may claim them without waiting for expiry.
UPDATE outbox_lanes
SET owner = '', lease_until = 'epoch'
WHERE owner = sqlc.arg(owner) AND lane = ANY(sqlc.arg(lanes)::smallint[]);

-- name: MarkPublished :execrows
-- MarkPublished records that the broker acknowledged the rows ids, but only
-- for rows in a lane owner still leases: a replica that lost a lane (paused
-- past its lease, cut off from the database) must not mark rows the new
-- owner is publishing. Rows it published anyway are duplicates, within the
-- at-least-once contract.
UPDATE outbox
SET published_at = now(), attempts = attempts + 1
WHERE id = ANY(sqlc.arg(ids)::bigint[])
  AND published_at IS NULL
  AND lane IN (
      SELECT l.lane FROM outbox_lanes l
      WHERE l.owner = sqlc.arg(owner) AND l.lease_until > now()
  );

-- name: RecordFailure :exec
-- RecordFailure counts a failed publish attempt of the rows ids and keeps
-- the error, for operators; the rows stay pending and are retried.
UPDATE outbox
SET attempts = attempts + 1, last_error = sqlc.arg(error)
WHERE id = ANY(sqlc.arg(ids)::bigint[]) AND published_at IS NULL;

-- name: ParkEvent :execrows
-- ParkEvent takes the row id out of the relay's work queue with its error:
-- the broker rejected it for good (or it cannot be decrypted). It stays in
-- the table, visible, until an operator resolves it (clears parked_at to
-- retry, or deletes it). Guarded by the lease like MarkPublished.
UPDATE outbox
SET parked_at = now(), attempts = attempts + 1, last_error = sqlc.arg(error)
WHERE id = sqlc.arg(id)
  AND published_at IS NULL
  AND lane IN (
      SELECT l.lane FROM outbox_lanes l
      WHERE l.owner = sqlc.arg(owner) AND l.lease_until > now()
  );

-- name: DeletePublished :execrows
-- DeletePublished deletes up to max_rows rows published more than
-- retention_ms ago, oldest first. SKIP LOCKED lets the janitors of several
-- replicas run at once without waiting on each other.
DELETE FROM outbox
WHERE id IN (
    SELECT o.id FROM outbox o
    WHERE o.published_at < now() - sqlc.arg(retention_ms)::bigint * interval '1 millisecond'
    ORDER BY o.published_at
    LIMIT sqlc.arg(max_rows)
    FOR UPDATE SKIP LOCKED
);

-- name: TableStats :one
-- TableStats counts the outbox rows by state (one sequential scan; the
-- janitor keeps the table small).
SELECT
    count(*) FILTER (WHERE published_at IS NULL AND parked_at IS NULL) AS pending,
    count(*) FILTER (WHERE published_at IS NOT NULL)                   AS published,
    count(*) FILTER (WHERE published_at IS NULL AND parked_at IS NOT NULL) AS parked
FROM outbox;

-- name: OldestPendingAge :one
-- OldestPendingAge is the age in seconds of the oldest pending row, 0 when
-- there is none. It reads the first pending row of each lane through the
-- work-queue index (lanes index lookups, whatever the backlog) instead of
-- scanning every pending row.
SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(p.occurred_at)), 0)::float8 AS age_seconds
FROM generate_series(0, sqlc.arg(lanes)::int - 1) AS l(lane)
CROSS JOIN LATERAL (
    SELECT o.occurred_at FROM outbox o
    WHERE o.lane = l.lane AND o.published_at IS NULL AND o.parked_at IS NULL
    ORDER BY o.id
    LIMIT 1
) p;
