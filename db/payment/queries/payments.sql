-- name: CreatePayment :one
-- CreatePayment records the outcome of a payment attempt (CAPTURED or
-- DECLINED) at version 1. The unique order_id makes a second attempt for the
-- same order return no row (pgx.ErrNoRows) instead of an error, so the caller
-- can read and compare the existing payment; the insert then waits for a
-- concurrent uncommitted insert of the same order and sees its outcome.
INSERT INTO payments (id, order_id, customer_id, currency_code, amount_minor, status, decline_reason,
                      payment_method, created_at, updated_at)
VALUES (@id, @order_id, @customer_id, @currency_code, @amount_minor, @status, @decline_reason,
        @payment_method, @now, @now)
ON CONFLICT (order_id) DO NOTHING
RETURNING *;

-- name: CreateVoidedPayment :one
-- CreateVoidedPayment records the order's one payment as VOIDED (version 1,
-- no amount, currency or method) when a refund by order id finds none, so
-- that no payment can be captured for the order afterwards. No row means
-- the order has a payment: like CreatePayment, the insert first waits for a
-- concurrent uncommitted insert of the same order (a ProcessPayment in
-- flight); if that commits, the caller reads and refunds it, if it rolls
-- back, the VOIDED row is inserted.
INSERT INTO payments (id, order_id, customer_id, currency_code, amount_minor, status, refund_reason,
                      payment_method, created_at, updated_at)
VALUES (@id, @order_id, @customer_id, '', 0, 'VOIDED', @refund_reason, '', @now, @now)
ON CONFLICT (order_id) DO NOTHING
RETURNING *;

-- name: GetPayment :one
-- GetPayment reads one payment by id.
SELECT * FROM payments WHERE id = @id;

-- name: GetPaymentByOrder :one
-- GetPaymentByOrder reads the payment of an order (at most one exists).
SELECT * FROM payments WHERE order_id = @order_id;

-- name: RefundPayment :one
-- RefundPayment refunds a captured payment in full if it is still at the
-- expected version, bumping the version. No row means the payment changed
-- since it was read (or is not CAPTURED): an optimistic-lock conflict that
-- the caller resolves by re-reading. The status guard keeps the database
-- itself from refunding twice even if a caller skipped the version check.
UPDATE payments
SET status = 'REFUNDED', refunded_minor = amount_minor, refund_reason = @refund_reason,
    version = version + 1, updated_at = @now
WHERE id = @id AND version = @version AND status = 'CAPTURED'
RETURNING *;
