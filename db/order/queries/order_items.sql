-- name: CreateOrderItems :copyfrom
-- CreateOrderItems inserts the lines of a new order in one round trip.
INSERT INTO order_items (order_id, line_no, sku, name, quantity, unit_price_minor)
VALUES (@order_id, @line_no, @sku, @name, @quantity, @unit_price_minor);

-- name: ListOrderItems :many
-- ListOrderItems returns an order's lines in line order.
SELECT * FROM order_items WHERE order_id = @order_id ORDER BY line_no;
