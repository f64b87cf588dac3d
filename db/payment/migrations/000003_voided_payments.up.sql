-- VOIDED: a refund by order id (a saga compensating a ProcessPayment whose
-- outcome it never learned) that found no payment records the order's one
-- payment as VOIDED, so that the ProcessPayment, if it is still in flight or
-- arrives later, hits the unique order_id and captures nothing:
-- compensations are absorbing. Nothing was ever asked to be paid, so a
-- VOIDED row has no amount, no currency and no payment method. It is final.
ALTER TABLE payments
    DROP CONSTRAINT payments_status_check,
    ADD CONSTRAINT payments_status_check
        CHECK (status IN ('CAPTURED', 'DECLINED', 'REFUNDED', 'VOIDED')),
    DROP CONSTRAINT payments_amount_minor_check,
    ADD CONSTRAINT payments_amount_minor_check
        CHECK (amount_minor > 0 OR status = 'VOIDED'),
    DROP CONSTRAINT payments_currency_code_check,
    ADD CONSTRAINT payments_currency_code_check
        CHECK (currency_code ~ '^[A-Z]{3}$' OR status = 'VOIDED'),
    ADD CONSTRAINT payments_voided_check
        CHECK (status <> 'VOIDED' OR (amount_minor = 0 AND currency_code = '' AND refunded_minor = 0));
