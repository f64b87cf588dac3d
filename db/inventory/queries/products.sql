-- name: ListProducts :many
-- ListProducts pages through the catalog in SKU order (keyset pagination):
-- the products after after_sku ('' for the first page), at most page_limit.
SELECT * FROM products
WHERE sku > sqlc.arg(after_sku)::text
ORDER BY sku
LIMIT sqlc.arg(page_limit)::int;

-- name: GetProductsBySKU :many
-- GetProductsBySKU reads the named SKUs in SKU order; unknown SKUs are simply
-- absent, so the caller can name the ones that are missing.
SELECT * FROM products WHERE sku = ANY(sqlc.arg(skus)::text[]) ORDER BY sku;

-- name: GetProduct :one
-- GetProduct reads one SKU.
SELECT * FROM products WHERE sku = sqlc.arg(sku);

-- name: TakeStock :execrows
-- TakeStock moves quantity from available to reserved if enough is
-- available; 0 rows means the SKU is short. The row lock serializes
-- concurrent reservations of one SKU, and because the condition is
-- re-checked on the newest row version after the lock wait (READ COMMITTED),
-- available can never go negative; the CHECK constraint backs this up.
-- The version is bumped: the admin's view of the SKU is no longer true.
UPDATE products
SET available = available - sqlc.arg(quantity)::bigint,
    reserved = reserved + sqlc.arg(quantity)::bigint,
    version = version + 1,
    updated_at = now()
WHERE sku = sqlc.arg(sku) AND available >= sqlc.arg(quantity)::bigint;

-- name: TakeStockFor :execrows
-- TakeStockFor is TakeStock for a group of reservations of one SKU at once
-- (reserveBatch): quantity is their total, and the version goes up by one
-- per reservation, as if each had been taken alone. 0 rows means the SKU
-- cannot cover the whole group.
UPDATE products
SET available = available - sqlc.arg(quantity)::bigint,
    reserved = reserved + sqlc.arg(quantity)::bigint,
    version = version + sqlc.arg(reservations)::bigint,
    updated_at = now()
WHERE sku = sqlc.arg(sku) AND available >= sqlc.arg(quantity)::bigint;

-- name: ReturnStock :execrows
-- ReturnStock moves quantity from reserved back to available; 0 rows means
-- the SKU does not hold that much reserved stock, which a correct caller
-- never sees (it would be a bookkeeping error, so the caller aborts).
UPDATE products
SET available = available + sqlc.arg(quantity)::bigint,
    reserved = reserved - sqlc.arg(quantity)::bigint,
    version = version + 1,
    updated_at = now()
WHERE sku = sqlc.arg(sku) AND reserved >= sqlc.arg(quantity)::bigint;

-- name: SetAvailable :one
-- SetAvailable sets the available quantity if the product is still at the
-- expected version (optimistic locking); no row means the SKU is unknown or
-- its version moved on (a conflict): GetProduct tells which.
UPDATE products
SET available = sqlc.arg(available)::bigint, version = version + 1, updated_at = now()
WHERE sku = sqlc.arg(sku) AND version = sqlc.arg(version)::bigint
RETURNING *;

-- name: LockProduct :one
-- LockProduct reads one SKU and locks its row until the transaction ends:
-- a group of deltas (AddStock on a hot SKU) is checked against it in Go and
-- written with SetStock, one UPDATE for the group.
SELECT * FROM products WHERE sku = sqlc.arg(sku) FOR UPDATE;

-- name: SetStock :one
-- SetStock writes the available units and the version a group of deltas
-- reached (one version per delta) on a row locked by LockProduct.
UPDATE products
SET available = sqlc.arg(available)::bigint, version = sqlc.arg(version)::bigint, updated_at = now()
WHERE sku = sqlc.arg(sku)
RETURNING *;
