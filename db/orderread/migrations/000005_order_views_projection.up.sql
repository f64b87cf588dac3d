-- What the projector (services/order/internal/projection) needs beyond the
-- first sketch of the view.

-- An event of an order's payment or reservation can arrive before the
-- order's own order.created (they are on other topics, so Kafka does not
-- order them): the projector merges it into a row of its own, with status
-- '' and order_version 0, that the queries do not show until order.created
-- fills it in. Nothing is held in memory, so nothing is lost in a crash.
ALTER TABLE order_views DROP CONSTRAINT order_views_status_check;
ALTER TABLE order_views ADD CONSTRAINT order_views_status_check
    CHECK (status IN ('', 'PENDING', 'CONFIRMED', 'CANCELLED'));

ALTER TABLE order_views
    ADD COLUMN payment_id       TEXT NOT NULL DEFAULT '',
    -- Why a payment was declined or refunded.
    ADD COLUMN payment_reason   TEXT NOT NULL DEFAULT '',
    ADD COLUMN reservation_id   TEXT NOT NULL DEFAULT '',
    -- Why stock was rejected.
    ADD COLUMN inventory_reason TEXT NOT NULL DEFAULT '',
    -- When the newest change was committed to the view: occurred-at to
    -- projected_at is the projection lag.
    ADD COLUMN projected_at     TIMESTAMPTZ NOT NULL DEFAULT now();

-- GetOrderView's read-your-writes wait and the auditor compare by id only
-- (the primary key); ListOrders uses the two customer indexes of 000001.
