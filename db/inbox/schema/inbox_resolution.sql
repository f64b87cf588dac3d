-- Canonical DDL: how parked events were resolved. Every service that
-- consumes events carries an identical copy of this file as one of its
-- migrations.

-- An operator resolves a parked event through ParkedEventService
-- (platform/inbox Admin): replayed (applied now, as the consumer would
-- have) or discarded (given up, with a reason). The row keeps who did it
-- and why: the durable audit record of the decision. resolved_at was set
-- by hand before; such rows keep resolution ''.
ALTER TABLE inbox_parked
    ADD COLUMN resolution        TEXT NOT NULL DEFAULT ''
        CHECK (resolution IN ('', 'replayed', 'discarded')),
    ADD COLUMN resolved_by       TEXT NOT NULL DEFAULT '',
    ADD COLUMN resolution_reason TEXT NOT NULL DEFAULT '',
    -- Replays that failed again: the event stays parked, error is the
    -- latest failure.
    ADD COLUMN replay_attempts   INTEGER NOT NULL DEFAULT 0;

-- The admin lists parked events in id order, unresolved ones by default.
CREATE INDEX inbox_parked_list_idx ON inbox_parked (consumer, id) WHERE resolved_at IS NULL;
