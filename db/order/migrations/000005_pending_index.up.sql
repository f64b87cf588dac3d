-- The orchestrator's reconciler pages through the orders still PENDING,
-- oldest first (ListStalePendingOrders): a partial index keeps that to the
-- few PENDING rows however many orders were ever placed.
CREATE INDEX orders_pending_created_idx ON orders (created_at, id) WHERE status = 'PENDING';
