-- The old constraints cannot hold VOIDED rows: they are deleted. A VOIDED
-- row records that an order must never be charged; after this migration a
-- late ProcessPayment for such an order would capture again.
DELETE FROM payments WHERE status = 'VOIDED';
ALTER TABLE payments
    DROP CONSTRAINT payments_voided_check,
    DROP CONSTRAINT payments_currency_code_check,
    ADD CONSTRAINT payments_currency_code_check CHECK (currency_code ~ '^[A-Z]{3}$'),
    DROP CONSTRAINT payments_amount_minor_check,
    ADD CONSTRAINT payments_amount_minor_check CHECK (amount_minor > 0),
    DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check CHECK (status IN ('CAPTURED', 'DECLINED', 'REFUNDED'));
