-- Products: the catalog and its stock. available and reserved can never go
-- negative: the CHECKs hold even if application code is wrong.
CREATE TABLE products (
    sku              TEXT        PRIMARY KEY CHECK (sku ~ '^[A-Z0-9][A-Z0-9-]{0,63}$'),
    name             TEXT        NOT NULL,
    currency_code    TEXT        NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    unit_price_minor BIGINT      NOT NULL CHECK (unit_price_minor >= 0),
    available        BIGINT      NOT NULL CHECK (available >= 0),
    reserved         BIGINT      NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    version          BIGINT      NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Reservations: at most one per order, so a duplicate ReserveStock can never
-- reserve twice.
CREATE TABLE reservations (
    id            UUID        PRIMARY KEY,
    order_id      UUID        NOT NULL UNIQUE,
    status        TEXT        NOT NULL CHECK (status IN ('RESERVED', 'REJECTED', 'RELEASED')),
    reject_reason TEXT        NOT NULL DEFAULT '',
    version       BIGINT      NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE reservation_items (
    reservation_id UUID    NOT NULL REFERENCES reservations (id) ON DELETE CASCADE,
    sku            TEXT    NOT NULL REFERENCES products (sku),
    quantity       INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (reservation_id, sku)
);
