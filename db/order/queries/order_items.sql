-- Lines are written together with their order by CreateOrder (orders.sql)
-- and never change afterwards.

-- name: ListOrderItems :many
-- ListOrderItems returns an order's lines in line order.
SELECT * FROM order_items WHERE order_id = @order_id ORDER BY line_no;

-- name: ListOrderItemsOfOrders :many
-- ListOrderItemsOfOrders returns the lines of several orders, by order and
-- in line order: one round trip for a page of orders.
SELECT * FROM order_items WHERE order_id = ANY(@order_ids::uuid[]) ORDER BY order_id, line_no;
