-- The denormalized order view (CQRS read side), built only from events.
-- Each source aggregate's version is kept so that events are applied in
-- aggregate-version order and a replayed old event changes nothing.
CREATE TABLE order_views (
    order_id          UUID        PRIMARY KEY,
    customer_id       TEXT        NOT NULL,
    status            TEXT        NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    -- [{"sku","name","quantity","unit_price_minor"}]
    items             JSONB       NOT NULL,
    currency_code     TEXT        NOT NULL,
    total_minor       BIGINT      NOT NULL,
    payment_status    TEXT        NOT NULL DEFAULT '',
    inventory_status  TEXT        NOT NULL DEFAULT '',
    cancel_reason     TEXT        NOT NULL DEFAULT '',
    order_version     BIGINT      NOT NULL DEFAULT 0,
    payment_version   BIGINT      NOT NULL DEFAULT 0,
    inventory_version BIGINT      NOT NULL DEFAULT 0,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
);

-- ListOrders: a customer's orders by status, newest first, keyset-paginated.
CREATE INDEX order_views_customer_idx ON order_views (customer_id, created_at DESC, order_id DESC);
CREATE INDEX order_views_customer_status_idx ON order_views (customer_id, status, created_at DESC, order_id DESC);
