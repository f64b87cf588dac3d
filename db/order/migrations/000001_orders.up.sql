-- Orders: the write model of the order service.
CREATE TABLE orders (
    id               UUID        PRIMARY KEY,
    customer_id      TEXT        NOT NULL,
    status           TEXT        NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED')),
    currency_code    TEXT        NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    total_minor      BIGINT      NOT NULL CHECK (total_minor >= 0),
    -- Personal data; kept as JSON here, encrypted in events.
    shipping_address JSONB       NOT NULL,
    payment_method   TEXT        NOT NULL,
    cancel_reason    TEXT        NOT NULL DEFAULT '',
    -- The authenticated caller who placed the order.
    placed_by        TEXT        NOT NULL,
    -- SHA-256 of (caller, method, idempotency key): the database's own guard
    -- against a duplicate PlaceOrder when the Redis key is lost.
    idempotency_key  BYTEA       UNIQUE,
    version          BIGINT      NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX orders_customer_idx ON orders (customer_id, created_at DESC);

-- Order lines, priced from the inventory catalog at placement.
CREATE TABLE order_items (
    order_id         UUID    NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line_no          INTEGER NOT NULL CHECK (line_no >= 1),
    sku              TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT  NOT NULL CHECK (unit_price_minor >= 0),
    PRIMARY KEY (order_id, line_no)
);
