-- Saga instances. A saga is claimed by one orchestrator replica at a time
-- under a lease (lease_owner, lease_until); an expired lease may be taken by
-- any replica, so no leader is needed.
CREATE TABLE sagas (
    id             UUID        PRIMARY KEY,
    saga_type      TEXT        NOT NULL,
    -- Business key, for the order saga the order id: one saga per key.
    correlation_id TEXT        NOT NULL,
    state          TEXT        NOT NULL
        CHECK (state IN ('RUNNING', 'COMPENSATING', 'COMPLETED', 'COMPENSATED', 'PARKED')),
    -- Index of the next step group to run (forward) or undo (compensating).
    cursor         INTEGER     NOT NULL DEFAULT 0,
    -- Saga context, AES-256-GCM encrypted; key_id names the key.
    context        BYTEA       NOT NULL,
    key_id         TEXT        NOT NULL,
    started_by     TEXT        NOT NULL,
    failure_reason TEXT        NOT NULL DEFAULT '',
    traceparent    TEXT        NOT NULL DEFAULT '',
    tracestate     TEXT        NOT NULL DEFAULT '',
    deadline       TIMESTAMPTZ NOT NULL,
    -- When the saga may next be worked on (retry backoff).
    next_run_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_owner    TEXT        NOT NULL DEFAULT '',
    lease_until    TIMESTAMPTZ NOT NULL DEFAULT 'epoch',
    version        BIGINT      NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (saga_type, correlation_id)
);

-- Claim queue: active sagas by when they are due.
CREATE INDEX sagas_due_idx ON sagas (next_run_at)
    WHERE state IN ('RUNNING', 'COMPENSATING');

CREATE INDEX sagas_state_created_idx ON sagas (state, created_at DESC, id);

-- One row per step and phase: written before the remote call (RUNNING) and
-- after it (SUCCEEDED or FAILED), so a crash between the two is visible and
-- the step is retried with the same idempotency key.
CREATE TABLE saga_steps (
    saga_id    UUID        NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    name       TEXT        NOT NULL,
    phase      TEXT        NOT NULL CHECK (phase IN ('ACTION', 'COMPENSATION')),
    status     TEXT        NOT NULL CHECK (status IN ('RUNNING', 'SUCCEEDED', 'FAILED')),
    attempts   INTEGER     NOT NULL DEFAULT 0,
    last_error TEXT        NOT NULL DEFAULT '',
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    ended_at   TIMESTAMPTZ,
    PRIMARY KEY (saga_id, name, phase)
);

-- Every transition, append-only, for audit.
CREATE TABLE saga_audit (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    saga_id    UUID        NOT NULL REFERENCES sagas (id) ON DELETE CASCADE,
    actor      TEXT        NOT NULL,
    action     TEXT        NOT NULL,
    detail     JSONB       NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX saga_audit_saga_idx ON saga_audit (saga_id, id);
