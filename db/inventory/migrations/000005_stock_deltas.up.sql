-- AdjustStock by delta: one row per applied delta, keyed by the request's
-- hashed idempotency key. A delta is not idempotent by itself (applied
-- twice, it adds twice), so, like reservations.order_id for ReserveStock,
-- this unique key makes a duplicate that Redis missed (a flushed or lost
-- key) find the first run's row instead of applying again.
CREATE TABLE stock_deltas (
    request_key TEXT        PRIMARY KEY,
    sku         TEXT        NOT NULL REFERENCES products (sku),
    delta       BIGINT      NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- INSERT … ON CONFLICT (request_key) needs SELECT on the conflict target.
GRANT SELECT, INSERT ON stock_deltas TO goodgo_inventory;
