-- name: GetOrderView :one
-- GetOrderView reads one order view.
SELECT * FROM order_views WHERE order_id = @order_id;
