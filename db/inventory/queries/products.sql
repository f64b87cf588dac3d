-- name: ListProducts :many
-- ListProducts pages through the catalog in SKU order (keyset pagination).
SELECT * FROM products WHERE sku > @after_sku ORDER BY sku LIMIT @page_limit;

-- name: GetProductsBySKU :many
-- GetProductsBySKU reads the named SKUs; unknown SKUs are simply absent.
SELECT * FROM products WHERE sku = ANY(@skus::text[]) ORDER BY sku;

-- name: GetProduct :one
-- GetProduct reads one SKU.
SELECT * FROM products WHERE sku = @sku;

-- name: TakeStock :execrows
-- TakeStock moves quantity from available to reserved if enough is
-- available. The row lock serializes concurrent reservations of one SKU and
-- the condition (plus the CHECK) keeps available from going negative.
UPDATE products
SET available = available - @quantity, reserved = reserved + @quantity,
    version = version + 1, updated_at = @now
WHERE sku = @sku AND available >= @quantity;

-- name: ReturnStock :execrows
-- ReturnStock moves quantity from reserved back to available.
UPDATE products
SET available = available + @quantity, reserved = reserved - @quantity,
    version = version + 1, updated_at = @now
WHERE sku = @sku AND reserved >= @quantity;

-- name: SetAvailable :one
-- SetAvailable sets the available quantity if the product is still at the
-- expected version; no row means a stale version (a conflict).
UPDATE products
SET available = @available, version = version + 1, updated_at = @now
WHERE sku = @sku AND version = @version
RETURNING *;
