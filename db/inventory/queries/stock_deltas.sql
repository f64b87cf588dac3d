-- name: RecordStockDelta :execrows
-- RecordStockDelta claims request_key for one delta of the transaction; 0
-- rows means a delta with this key was applied before (the caller changes
-- nothing). A concurrent duplicate waits on the primary key until the first
-- transaction ends.
INSERT INTO stock_deltas (request_key, sku, delta)
VALUES (sqlc.arg(request_key), sqlc.arg(sku), sqlc.arg(delta))
ON CONFLICT (request_key) DO NOTHING;
