-- name: GetOrderView :one
-- GetOrderView reads one order view. A row with customer_id '' holds
-- events of the order's payment or reservation read before its
-- order.created: it is not an order yet.
SELECT * FROM order_views WHERE order_id = @order_id AND customer_id <> '';

-- name: OrderViewVersion :one
-- OrderViewVersion is the order version the view has applied (0 when
-- order.created is not applied yet), for read-your-writes waits.
SELECT order_version FROM order_views WHERE order_id = @order_id;

-- name: ListCustomerOrders :many
-- ListCustomerOrders lists a customer's orders newest first, after the
-- cursor (created_at, order_id) of the previous page's last row ('infinity'
-- and the greatest UUID for the first page). Served by
-- order_views_customer_idx without a sort.
SELECT * FROM order_views
WHERE customer_id = @customer_id
  AND (created_at, order_id) < (@after_created_at::timestamptz, @after_order_id::uuid)
ORDER BY created_at DESC, order_id DESC
LIMIT @page_size;

-- name: ListCustomerOrdersByStatus :many
-- ListCustomerOrdersByStatus is ListCustomerOrders for one status, served
-- by order_views_customer_status_idx.
SELECT * FROM order_views
WHERE customer_id = @customer_id AND status = @status
  AND (created_at, order_id) < (@after_created_at::timestamptz, @after_order_id::uuid)
ORDER BY created_at DESC, order_id DESC
LIMIT @page_size;
