-- name: CreateOrder :exec
-- CreateOrder inserts a new PENDING order at version 1.
INSERT INTO orders (id, customer_id, status, currency_code, total_minor, shipping_address,
                    payment_method, placed_by, idempotency_key, created_at, updated_at)
VALUES (@id, @customer_id, 'PENDING', @currency_code, @total_minor, @shipping_address,
        @payment_method, @placed_by, @idempotency_key, @now, @now);

-- name: GetOrder :one
-- GetOrder reads one order.
SELECT * FROM orders WHERE id = @id;

-- name: GetOrderForUpdate :one
-- GetOrderForUpdate reads one order and locks its row until the transaction
-- ends, for server-side transitions that must see the latest state.
SELECT * FROM orders WHERE id = @id FOR UPDATE;

-- name: GetOrderByIdempotencyKey :one
-- GetOrderByIdempotencyKey finds the order a PlaceOrder with this hashed key
-- already created (the database's guard when the Redis key was lost).
SELECT * FROM orders WHERE idempotency_key = @idempotency_key;

-- name: UpdateOrderStatus :execrows
-- UpdateOrderStatus moves an order to a new status if it is still at the
-- expected version; zero rows means a concurrent change (a conflict).
UPDATE orders
SET status = @status, cancel_reason = @cancel_reason, version = version + 1, updated_at = @now
WHERE id = @id AND version = @version;

-- name: UpdateShippingAddress :execrows
-- UpdateShippingAddress changes the address if the order is still at the
-- expected version; zero rows means a stale version (a conflict).
UPDATE orders
SET shipping_address = @shipping_address, version = version + 1, updated_at = @now
WHERE id = @id AND version = @version;
