-- Queries of the operators' admin of parked events (platform/inbox Admin).

-- name: ListParked :many
-- ListParked pages through consumer's parked events in id order after the
-- id given (0 to start), optionally of one aggregate type (and id), and
-- with the resolved ones only when include_resolved.
SELECT id, consumer, event_id, topic, kafka_partition, kafka_offset, aggregate_type, aggregate_id,
       event_type, headers, error, parked_at, resolved_at, resolution, resolved_by, resolution_reason,
       replay_attempts
FROM inbox_parked
WHERE consumer = @consumer
  AND id > @after
  AND (@include_resolved::boolean OR resolved_at IS NULL)
  AND (@aggregate_type::text = '' OR aggregate_type = @aggregate_type::text)
  AND (@aggregate_id::text = '' OR aggregate_id = @aggregate_id::text)
ORDER BY id
LIMIT @page_size;

-- name: LockParked :one
-- LockParked reads one parked event with its payload and locks it, so that
-- two operators never resolve it at once.
SELECT id, consumer, event_id, topic, kafka_partition, kafka_offset, aggregate_type, aggregate_id,
       event_type, headers, payload, key_id, error, parked_at, resolved_at, resolution, resolved_by,
       resolution_reason, replay_attempts
FROM inbox_parked
WHERE consumer = @consumer AND event_id = @event_id
FOR UPDATE;

-- name: ParkedAhead :one
-- ParkedAhead returns the event id of the oldest unresolved parked event
-- of the aggregate parked before id: the event it is parked behind. No
-- row: none.
SELECT event_id FROM inbox_parked
WHERE consumer = @consumer AND aggregate_type = @aggregate_type AND aggregate_id = @aggregate_id
  AND resolved_at IS NULL AND id < @id
ORDER BY id
LIMIT 1;

-- name: NextParked :one
-- NextParked returns the event id of the oldest unresolved parked event of
-- the aggregate: the next to replay behind one just resolved. No row:
-- none.
SELECT event_id FROM inbox_parked
WHERE consumer = @consumer AND aggregate_type = @aggregate_type AND aggregate_id = @aggregate_id
  AND resolved_at IS NULL
ORDER BY id
LIMIT 1;

-- name: ResolveParked :execrows
-- ResolveParked marks an unresolved parked event resolved: replayed or
-- discarded, by whom and why.
UPDATE inbox_parked
SET resolved_at = now(), resolution = @resolution, resolved_by = @resolved_by,
    resolution_reason = @resolution_reason
WHERE id = @id AND resolved_at IS NULL;

-- name: RecordReplayFailure :exec
-- RecordReplayFailure keeps a parked event parked with the error of a
-- replay that failed again.
UPDATE inbox_parked
SET error = @error, replay_attempts = replay_attempts + 1
WHERE id = @id AND resolved_at IS NULL;
