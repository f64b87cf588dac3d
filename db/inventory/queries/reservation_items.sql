-- name: ListReservationItems :many
-- ListReservationItems returns a reservation's lines in SKU order.
SELECT * FROM reservation_items WHERE reservation_id = sqlc.arg(reservation_id) ORDER BY sku;
