-- Canonical outbox DDL. Every service that emits events carries an identical
-- copy of this file as one of its migrations; `make verify/migrations` fails
-- when a copy drifts.

-- One row per domain event, written in the same transaction as the business
-- change. The relay publishes rows of one lane in id order; because the
-- business row is written (and locked) first, two transactions on the same
-- aggregate allocate their outbox ids in commit order, so id order is
-- per-aggregate commit order.
CREATE TABLE outbox (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          UUID        NOT NULL UNIQUE,
    -- hash(aggregate_id) mod the lane count: the unit of relay ownership.
    lane              SMALLINT    NOT NULL CHECK (lane >= 0),
    topic             TEXT        NOT NULL,
    aggregate_type    TEXT        NOT NULL,
    aggregate_id      TEXT        NOT NULL,
    aggregate_version BIGINT      NOT NULL,
    event_type        TEXT        NOT NULL,
    content_type      TEXT        NOT NULL,
    payload           BYTEA       NOT NULL,
    -- Encryption key id of payload; '' means plaintext.
    key_id            TEXT        NOT NULL DEFAULT '',
    -- W3C trace context of the writing request, carried to Kafka headers.
    traceparent       TEXT        NOT NULL DEFAULT '',
    tracestate        TEXT        NOT NULL DEFAULT '',
    occurred_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at      TIMESTAMPTZ,
    attempts          INTEGER     NOT NULL DEFAULT 0,
    last_error        TEXT        NOT NULL DEFAULT '',
    -- Set when the broker rejected the event for good; a human decides.
    parked_at         TIMESTAMPTZ
);

-- The relay's work queue: unpublished, unparked rows by lane in id order.
CREATE INDEX outbox_pending_idx ON outbox (lane, id)
    WHERE published_at IS NULL AND parked_at IS NULL;

-- The janitor deletes published rows by age.
CREATE INDEX outbox_published_idx ON outbox (published_at)
    WHERE published_at IS NOT NULL;

-- Lane leases: each relay replica owns a set of lanes until lease_until.
CREATE TABLE outbox_lanes (
    lane        SMALLINT    PRIMARY KEY CHECK (lane >= 0),
    owner       TEXT        NOT NULL DEFAULT '',
    lease_until TIMESTAMPTZ NOT NULL DEFAULT 'epoch'
);

-- Writers wake the relay at commit: NOTIFY is transactional and delivered
-- once per distinct payload and transaction. The payload lists the lanes the
-- statement wrote ("3,17"), so that the relay wakes only the workers owning
-- them instead of all of them: each wake-up costs a query.
CREATE FUNCTION outbox_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    lanes TEXT := (SELECT string_agg(DISTINCT lane::TEXT, ',') FROM inserted);
BEGIN
    IF lanes IS NOT NULL THEN
        PERFORM pg_notify('outbox', lanes);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify
    AFTER INSERT ON outbox
    REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
