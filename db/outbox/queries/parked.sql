-- Queries of the operators' ParkedEventService in the outbox relay
-- (services/outbox-relay/internal/parked), as the relay's role.

-- name: ListParkedEvents :many
-- ListParkedEvents pages through the parked rows in id order after the id
-- given (0 to start), optionally of one aggregate type (and id). Parked
-- rows are few; the scan is bounded by the table, which the janitor keeps
-- small.
SELECT id, event_id, topic, aggregate_type, aggregate_id, aggregate_version, event_type, attempts,
       last_error, occurred_at, parked_at::timestamptz AS parked_at
FROM outbox
WHERE parked_at IS NOT NULL
  AND id > @after
  AND (@aggregate_type::text = '' OR aggregate_type = @aggregate_type::text)
  AND (@aggregate_id::text = '' OR aggregate_id = @aggregate_id::text)
ORDER BY id
LIMIT @page_size;

-- name: UnparkEvent :one
-- UnparkEvent puts a parked row back in its lane's queue, as new: the relay
-- publishes it with the next batch of its lane (lowest ids first, so before
-- the lane's later pending rows). No row: the event is not parked here.
UPDATE outbox
SET parked_at = NULL, attempts = 0, last_error = ''
WHERE event_id = @event_id AND parked_at IS NOT NULL AND published_at IS NULL
RETURNING id, lane, topic, aggregate_type, aggregate_id, aggregate_version, event_type, attempts,
          last_error, occurred_at;

-- name: DeleteParkedEvent :one
-- DeleteParkedEvent drops a parked row for good. No row: the event is not
-- parked here.
DELETE FROM outbox
WHERE event_id = @event_id AND parked_at IS NOT NULL
RETURNING id, event_id, topic, aggregate_type, aggregate_id, aggregate_version, event_type, attempts,
          last_error, occurred_at, parked_at::timestamptz AS parked_at;

-- name: OutboxEventExists :one
-- OutboxEventExists reports whether the event is in this outbox at all
-- (parked or not), to tell "not parked" from "not here".
SELECT EXISTS (SELECT 1 FROM outbox WHERE event_id = @event_id) AS found;

-- name: WakeLane :exec
-- WakeLane notifies the relays that lane has work, as the writers' trigger
-- does at commit (a replayed row is an UPDATE, which the trigger does not
-- see), so the row is published at once, not at the next poll.
SELECT pg_notify('outbox', @lane::text);
