-- Queries of the idempotent consumer (platform/inbox). Every statement runs
-- in the consumer's transaction, together with the handler's effect.

-- name: RecordEvent :execrows
-- RecordEvent records that consumer processed event_id; 0 rows means it was
-- recorded before: the message is a redelivery and must be skipped.
INSERT INTO inbox (consumer, event_id, event_type, aggregate_type, aggregate_id, aggregate_version)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (consumer, event_id) DO NOTHING;

-- name: LockAppliedVersion :one
-- LockAppliedVersion returns the highest version of the aggregate consumer
-- has applied, locking the row so that two consumers of one group (during a
-- rebalance) apply the aggregate's events one at a time. No row: nothing
-- applied yet.
SELECT version FROM inbox_versions
WHERE consumer = $1 AND aggregate_type = $2 AND aggregate_id = $3
FOR UPDATE;

-- name: SetAppliedVersion :exec
-- SetAppliedVersion raises the applied version of the aggregate; it never
-- lowers it.
INSERT INTO inbox_versions (consumer, aggregate_type, aggregate_id, version)
VALUES ($1, $2, $3, $4)
ON CONFLICT (consumer, aggregate_type, aggregate_id)
DO UPDATE SET version = GREATEST(inbox_versions.version, EXCLUDED.version);

-- name: ParkedState :one
-- ParkedState answers two questions in one round trip: whether
-- consumer parked event_id before (resolved or not), and the event id of
-- the oldest unresolved parked event of the aggregate (the nil UUID when
-- none: event ids are UUIDv7, never nil).
SELECT EXISTS (
    SELECT 1 FROM inbox_parked p WHERE p.consumer = @consumer AND p.event_id = @event_id
) AS parked,
COALESCE((
    SELECT b.event_id FROM inbox_parked b
    WHERE b.consumer = @consumer AND b.aggregate_type = @aggregate_type AND b.aggregate_id = @aggregate_id
      AND b.resolved_at IS NULL
    ORDER BY b.id
    LIMIT 1
), '00000000-0000-0000-0000-000000000000'::uuid)::uuid AS blocker;

-- name: RecordEventLockVersion :one
-- RecordEventLockVersion is RecordEvent and LockAppliedVersion in one
-- round trip: recorded is 0 when consumer recorded event_id before (a
-- redelivery, to be skipped), and applied is the highest version of the
-- aggregate consumer has applied (-1: none), its row locked as
-- LockAppliedVersion locks it.
WITH recorded AS (
    INSERT INTO inbox (consumer, event_id, event_type, aggregate_type, aggregate_id, aggregate_version)
    VALUES (@consumer, @event_id, @event_type, @aggregate_type, @aggregate_id, @aggregate_version)
    ON CONFLICT (consumer, event_id) DO NOTHING
    RETURNING 1
)
SELECT (SELECT count(*) FROM recorded)::bigint AS recorded,
       COALESCE((
           SELECT v.version FROM inbox_versions v
           WHERE v.consumer = @consumer AND v.aggregate_type = @aggregate_type AND v.aggregate_id = @aggregate_id
           FOR UPDATE
       ), -1)::bigint AS applied;

-- name: ParkEvent :execrows
-- ParkEvent parks a message the consumer could not apply, with its error and
-- everything needed to replay it. Parking the same event twice is a no-op.
INSERT INTO inbox_parked (
    consumer, event_id, topic, kafka_partition, kafka_offset,
    aggregate_type, aggregate_id, event_type, headers, payload, key_id, error
) VALUES (
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
)
ON CONFLICT (consumer, event_id) DO NOTHING;

-- name: ListParkedPayloads :many
-- ListParkedPayloads pages through every parked payload in id order, after
-- the id given (0 to start): the reseal command's scan.
SELECT id, consumer, event_id, payload, key_id
FROM inbox_parked
WHERE id > @after
ORDER BY id
LIMIT @page_size;

-- name: ResealParkedPayload :execrows
-- ResealParkedPayload replaces a payload sealed as read with the same
-- payload sealed under another key; it matches nothing if the row changed.
UPDATE inbox_parked
SET payload = @sealed, key_id = @key_id
WHERE id = @id AND key_id = @read_key_id AND payload = @read_sealed;
