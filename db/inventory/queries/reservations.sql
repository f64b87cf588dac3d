-- name: CreateReservation :one
-- CreateReservation records an order's reservation; the unique order_id
-- makes a second one for the same order return no row.
INSERT INTO reservations (id, order_id, status, reject_reason, created_at, updated_at)
VALUES (@id, @order_id, @status, @reject_reason, @now, @now)
ON CONFLICT (order_id) DO NOTHING
RETURNING *;

-- name: GetReservationByOrder :one
-- GetReservationByOrder reads an order's reservation.
SELECT * FROM reservations WHERE order_id = @order_id;

-- name: GetReservationByOrderForUpdate :one
-- GetReservationByOrderForUpdate reads and locks an order's reservation.
SELECT * FROM reservations WHERE order_id = @order_id FOR UPDATE;

-- name: ReleaseReservation :execrows
-- ReleaseReservation marks a RESERVED reservation RELEASED.
UPDATE reservations
SET status = 'RELEASED', version = version + 1, updated_at = @now
WHERE id = @id AND status = 'RESERVED';
