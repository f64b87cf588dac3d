-- Canonical saga engine DDL (platform/saga). Every service that runs the
-- engine carries an identical copy of this file as one of its migrations
-- (db/orchestrator/migrations/000001_sagas.up.sql); make verify/migrations
-- compares them.

-- Saga instances. A saga is executed by one engine replica at a time under a
-- lease (lease_owner, lease_until); a replica whose lease expired is fenced
-- off by version: every engine write is
--   UPDATE … WHERE id = $1 AND version = $2 AND lease_owner = $3
-- and a claim bumps the version, so the former owner's writes match nothing.
CREATE TABLE sagas (
    id             UUID        PRIMARY KEY,
    -- Definition name, for example "order_checkout".
    saga_type      TEXT        NOT NULL,
    -- Business key, for the order saga the order id: one saga per key.
    correlation_id TEXT        NOT NULL,
    state          TEXT        NOT NULL
        CHECK (state IN ('RUNNING', 'COMPENSATING', 'COMPLETED', 'COMPENSATED', 'PARKED')),
    -- Index of the step group being run (RUNNING) or undone (COMPENSATING,
    -- counting down to 0).
    cursor         INTEGER     NOT NULL DEFAULT 0 CHECK (cursor >= 0),
    -- Saga context, AES-256-GCM sealed with the saga id as additional data;
    -- key_id names the key (platform/keyring).
    context        BYTEA       NOT NULL,
    key_id         TEXT        NOT NULL,
    -- The user whose request started the saga; steps act on their behalf.
    started_by     TEXT        NOT NULL,
    failure_reason TEXT        NOT NULL DEFAULT '',
    -- W3C trace context of the event that started the saga: step spans
    -- continue its trace, whichever replica runs them.
    traceparent    TEXT        NOT NULL DEFAULT '',
    tracestate     TEXT        NOT NULL DEFAULT '',
    -- The overall deadline: a saga still RUNNING after it compensates.
    deadline       TIMESTAMPTZ NOT NULL,
    -- When the saga may next be worked on (persisted retry backoff).
    next_run_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_owner    TEXT        NOT NULL DEFAULT '',
    lease_until    TIMESTAMPTZ NOT NULL DEFAULT 'epoch',
    -- When the current compensation began (or was retried by an operator):
    -- the compensation limit is measured from here.
    compensation_started_at TIMESTAMPTZ,
    version        BIGINT      NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set when the saga reaches COMPLETED or COMPENSATED.
    ended_at       TIMESTAMPTZ,
    CONSTRAINT sagas_type_correlation_key UNIQUE (saga_type, correlation_id)
) WITH (fillfactor = 70); -- room on the page for HOT updates: a saga row is rewritten once per step

-- Claim queue: active sagas by when they are due.
CREATE INDEX sagas_due_idx ON sagas (next_run_at)
    WHERE state IN ('RUNNING', 'COMPENSATING');

-- Operators' listings: newest first, all states or one state.
CREATE INDEX sagas_created_idx ON sagas (created_at DESC, id DESC);
CREATE INDEX sagas_state_created_idx ON sagas (state, created_at DESC, id DESC);

-- One row per step and phase, written before each remote call (RUNNING,
-- attempts + 1) and after it (SUCCEEDED or FAILED), so a crash between the
-- two is visible and the step is called again with the same idempotency key.
CREATE TABLE saga_steps (
    saga_id     UUID        NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    name        TEXT        NOT NULL,
    phase       TEXT        NOT NULL CHECK (phase IN ('ACTION', 'COMPENSATION')),
    -- Index of the step's group in the definition.
    group_index INTEGER     NOT NULL CHECK (group_index >= 0),
    status      TEXT        NOT NULL CHECK (status IN ('RUNNING', 'SUCCEEDED', 'FAILED')),
    attempts    INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Last error, as safe text for operators.
    last_error  TEXT        NOT NULL DEFAULT '',
    -- A FAILED action that failed for a business reason (payment declined):
    -- its effect did not happen, so it is not compensated.
    permanent   BOOLEAN     NOT NULL DEFAULT false,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at    TIMESTAMPTZ,
    PRIMARY KEY (saga_id, name, phase)
) WITH (fillfactor = 80); -- room for the HOT update that records each step's outcome

-- Every transition, append-only, for audit: who did what to which saga, when.
CREATE TABLE saga_audit (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    saga_id    UUID        NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    -- The user who started the saga, the operator who retried or aborted
    -- it, or the engine replica that ran a step.
    actor      TEXT        NOT NULL,
    action     TEXT        NOT NULL,
    detail     JSONB       NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX saga_audit_saga_idx ON saga_audit (saga_id, id);
