-- name: CreateOrder :execrows
-- CreateOrder inserts a new PENDING order at version 1 together with its
-- lines, in one statement (one round trip). The line arrays must all have
-- the same length: set-returning functions in one select list advance in
-- lockstep, zipping the arrays into rows. If an order with the same
-- idempotency key exists (an earlier or concurrent PlaceOrder with the same
-- key), it inserts nothing and returns 0 rows without aborting the
-- transaction: the caller then reads and returns that order. Otherwise it
-- returns the number of lines inserted (at least 1).
WITH new_order AS (
    INSERT INTO orders (id, customer_id, status, currency_code, total_minor, shipping_address,
                        shipping_address_key_id, payment_method, placed_by, idempotency_key,
                        created_at, updated_at)
    VALUES (@id, @customer_id, 'PENDING', @currency_code, @total_minor, @shipping_address,
            @shipping_address_key_id, @payment_method, @placed_by, @idempotency_key, @now, @now)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id
)
INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price_minor)
SELECT new_order.id, unnest(@line_nos::integer[]), unnest(@skus::text[]), unnest(@names::text[]),
       unnest(@quantities::integer[]), unnest(@unit_prices_minor::bigint[])
FROM new_order;

-- name: GetOrder :one
-- GetOrder reads one order (without its lines; see ListOrderItems).
SELECT * FROM orders WHERE id = @id;

-- name: GetOrderByIdempotencyKey :one
-- GetOrderByIdempotencyKey finds the order a PlaceOrder with this hashed key
-- already created (the database's guard when the Redis key was lost).
SELECT * FROM orders WHERE idempotency_key = @idempotency_key;

-- name: UpdateOrder :one
-- UpdateOrder writes an order's mutable fields and increments its version if
-- the order is still at the expected version. No row means the order changed
-- since it was read (a conflict).
UPDATE orders
SET status = @status, cancel_reason = @cancel_reason, shipping_address = @shipping_address,
    shipping_address_key_id = @shipping_address_key_id, version = version + 1, updated_at = @now
WHERE id = @id AND version = @version
RETURNING *;

-- name: ListAddresses :many
-- ListAddresses pages through every order's sealed address in id order,
-- after the id given (the nil UUID to start): the reseal command's scan.
SELECT id, shipping_address, shipping_address_key_id
FROM orders
WHERE id > @after
ORDER BY id
LIMIT @page_size;

-- name: ResealAddress :execrows
-- ResealAddress replaces an address sealed as read with the same address
-- sealed under another key. It matches nothing when the order changed its
-- address since (that write sealed under the active key already), and it
-- leaves version and updated_at alone: nothing a client sees changed.
UPDATE orders
SET shipping_address = @sealed, shipping_address_key_id = @key_id
WHERE id = @id AND shipping_address_key_id = @read_key_id AND shipping_address = @read_sealed;

-- name: ListStalePendingOrders :many
-- ListStalePendingOrders pages through the PENDING orders created before
-- @created_before, oldest first, after the keyset position
-- (@after_created_at, @after_id) — the Unix epoch and the nil UUID to
-- start. The orchestrator's reconciler looks among them for orders whose
-- saga never started; orders_pending_created_idx keeps it to PENDING rows.
SELECT * FROM orders
WHERE status = 'PENDING'
  AND created_at < @created_before
  AND (created_at, id) > (@after_created_at::timestamptz, @after_id::uuid)
ORDER BY created_at, id
LIMIT @page_size;

-- name: GetOrderWithItems :many
-- GetOrderWithItems reads an order with its lines in one round trip, one
-- row per line in line order. No row: no such order (or one without
-- lines; see GetOrder).
SELECT sqlc.embed(orders), sqlc.embed(order_items)
FROM orders JOIN order_items ON order_items.order_id = orders.id
WHERE orders.id = @id
ORDER BY order_items.line_no;
