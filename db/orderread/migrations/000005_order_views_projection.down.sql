ALTER TABLE order_views
    DROP COLUMN payment_id,
    DROP COLUMN payment_reason,
    DROP COLUMN reservation_id,
    DROP COLUMN inventory_reason,
    DROP COLUMN projected_at;
DELETE FROM order_views WHERE status = '';
ALTER TABLE order_views DROP CONSTRAINT order_views_status_check;
ALTER TABLE order_views ADD CONSTRAINT order_views_status_check
    CHECK (status IN ('PENDING', 'CONFIRMED', 'CANCELLED'));
