-- name: RecordStockDelta :execrows
-- RecordStockDelta claims request_key for one delta of the transaction; 0
-- rows means a delta with this key was applied before (the caller changes
-- nothing). A concurrent duplicate waits on the primary key until the first
-- transaction ends.
INSERT INTO stock_deltas (request_key, sku, delta)
VALUES (sqlc.arg(request_key), sqlc.arg(sku), sqlc.arg(delta))
ON CONFLICT (request_key) DO NOTHING;

-- name: AppliedStockDeltas :many
-- AppliedStockDeltas returns which of request_keys were applied before.
SELECT request_key FROM stock_deltas WHERE request_key = ANY(sqlc.arg(request_keys)::text[]);

-- name: RecordStockDeltas :exec
-- RecordStockDeltas records a group of deltas of one SKU (the parallel
-- arrays request_keys and deltas), applied under LockProduct's row lock:
-- no other transaction can have recorded one of them meanwhile, because
-- recording one needs the product's row lock too, so a unique violation
-- here is a bug and fails the transaction.
INSERT INTO stock_deltas (request_key, sku, delta)
SELECT unnest(sqlc.arg(request_keys)::text[]), sqlc.arg(sku), unnest(sqlc.arg(deltas)::bigint[]);
