-- Canonical inbox DDL. Every service that consumes events carries an
-- identical copy of this file as one of its migrations.

-- Processed events, recorded in the same transaction as the consumer's
-- effect: a redelivered event finds its row and is skipped.
CREATE TABLE inbox (
    consumer          TEXT        NOT NULL,
    event_id          UUID        NOT NULL,
    event_type        TEXT        NOT NULL,
    aggregate_type    TEXT        NOT NULL,
    aggregate_id      TEXT        NOT NULL,
    aggregate_version BIGINT      NOT NULL,
    processed_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE INDEX inbox_processed_at_idx ON inbox (processed_at);

-- Highest aggregate version each consumer has applied: older events are
-- ignored, so a late duplicate can never roll a projection back.
CREATE TABLE inbox_versions (
    consumer       TEXT   NOT NULL,
    aggregate_type TEXT   NOT NULL,
    aggregate_id   TEXT   NOT NULL,
    version        BIGINT NOT NULL,
    PRIMARY KEY (consumer, aggregate_type, aggregate_id)
);

-- Poison events: parked with their error instead of blocking a partition.
-- Later events of a parked aggregate are parked behind it, to keep order.
CREATE TABLE inbox_parked (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer          TEXT        NOT NULL,
    event_id          UUID        NOT NULL,
    topic             TEXT        NOT NULL,
    kafka_partition   INTEGER     NOT NULL,
    kafka_offset      BIGINT      NOT NULL,
    aggregate_type    TEXT        NOT NULL,
    aggregate_id      TEXT        NOT NULL,
    event_type        TEXT        NOT NULL,
    headers           JSONB       NOT NULL DEFAULT '{}',
    payload           BYTEA       NOT NULL,
    error             TEXT        NOT NULL,
    parked_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    resolved_at       TIMESTAMPTZ,
    UNIQUE (consumer, event_id)
);

CREATE INDEX inbox_parked_open_idx ON inbox_parked (consumer, aggregate_type, aggregate_id)
    WHERE resolved_at IS NULL;
