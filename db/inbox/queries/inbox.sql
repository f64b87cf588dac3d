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

-- name: IsParked :one
-- IsParked reports whether consumer parked event_id before (resolved or not).
SELECT EXISTS (
    SELECT 1 FROM inbox_parked WHERE consumer = $1 AND event_id = $2
) AS parked;

-- name: OpenParkedEvent :one
-- OpenParkedEvent returns the event id of the oldest unresolved parked event
-- of the aggregate; no row when none. Later events of that aggregate are
-- parked behind it so that the aggregate's order holds.
SELECT event_id FROM inbox_parked
WHERE consumer = $1 AND aggregate_type = $2 AND aggregate_id = $3 AND resolved_at IS NULL
ORDER BY id
LIMIT 1;

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
