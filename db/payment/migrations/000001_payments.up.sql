-- Payments: at most one per order (the unique constraint is the last line of
-- defence against a double charge when an idempotency key is lost).
CREATE TABLE payments (
    id             UUID        PRIMARY KEY,
    order_id       UUID        NOT NULL UNIQUE,
    currency_code  TEXT        NOT NULL CHECK (currency_code ~ '^[A-Z]{3}$'),
    amount_minor   BIGINT      NOT NULL CHECK (amount_minor > 0),
    status         TEXT        NOT NULL CHECK (status IN ('CAPTURED', 'DECLINED', 'REFUNDED')),
    decline_reason TEXT        NOT NULL DEFAULT '',
    -- Never more than was captured; a declined payment refunds nothing.
    refunded_minor BIGINT      NOT NULL DEFAULT 0
        CHECK (refunded_minor >= 0 AND refunded_minor <= amount_minor),
    refund_reason  TEXT        NOT NULL DEFAULT '',
    payment_method TEXT        NOT NULL,
    version        BIGINT      NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (status <> 'DECLINED' OR refunded_minor = 0)
);
