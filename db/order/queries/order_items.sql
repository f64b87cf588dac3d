-- Lines are written together with their order by CreateOrder (orders.sql)
-- and never change afterwards.

-- name: ListOrderItems :many
-- ListOrderItems returns an order's lines in line order.
SELECT * FROM order_items WHERE order_id = @order_id ORDER BY line_no;
