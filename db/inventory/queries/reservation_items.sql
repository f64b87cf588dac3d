-- name: CreateReservationItems :copyfrom
-- CreateReservationItems inserts the lines of a reservation.
INSERT INTO reservation_items (reservation_id, sku, quantity)
VALUES (@reservation_id, @sku, @quantity);

-- name: ListReservationItems :many
-- ListReservationItems returns a reservation's lines in SKU order.
SELECT * FROM reservation_items WHERE reservation_id = @reservation_id ORDER BY sku;
