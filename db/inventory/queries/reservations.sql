-- name: CreateReservation :one
-- CreateReservation records an order's reservation and its lines (the
-- parallel arrays skus and quantities) in one statement. The unique order_id
-- makes a second reservation of the same order return no row and insert no
-- lines; a concurrent duplicate waits on the unique index until the first
-- transaction ends. An unknown SKU fails the lines' foreign key.
WITH reservation AS (
    INSERT INTO reservations (id, order_id, status)
    VALUES (sqlc.arg(id), sqlc.arg(order_id), 'RESERVED')
    ON CONFLICT (order_id) DO NOTHING
    RETURNING *
), lines AS (
    -- Set-returning functions in a select list advance in lockstep.
    INSERT INTO reservation_items (reservation_id, sku, quantity)
    SELECT reservation.id, unnest(sqlc.arg(skus)::text[]), unnest(sqlc.arg(quantities)::int[])
    FROM reservation
)
SELECT * FROM reservation;

-- name: CreateReservations :many
-- CreateReservations is CreateReservation for several orders of one item
-- each (the parallel arrays ids, order_ids, skus and quantities), in one
-- statement: a group of reservations of a hot SKU (reserveBatch). It
-- returns the reservations it created; an order that already had one is
-- left out. Rows are inserted in order id order, the order every group
-- takes the unique index's entries in, so two groups cannot wait on each
-- other.
WITH input AS (
    SELECT unnest(sqlc.arg(ids)::uuid[]) AS id, unnest(sqlc.arg(order_ids)::uuid[]) AS order_id,
        unnest(sqlc.arg(skus)::text[]) AS sku, unnest(sqlc.arg(quantities)::int[]) AS quantity
), reservation AS (
    INSERT INTO reservations (id, order_id, status)
    SELECT id, order_id, 'RESERVED' FROM input ORDER BY order_id
    ON CONFLICT (order_id) DO NOTHING
    RETURNING *
), lines AS (
    INSERT INTO reservation_items (reservation_id, sku, quantity)
    SELECT reservation.id, input.sku, input.quantity
    FROM reservation JOIN input ON input.id = reservation.id
)
SELECT * FROM reservation;

-- name: RejectReservation :one
-- RejectReservation marks a reservation created in the same transaction
-- REJECTED. The version stays: the RESERVED state it replaces was never
-- committed, so no reader can have seen it.
UPDATE reservations
SET status = 'REJECTED', reject_reason = sqlc.arg(reject_reason)::text
WHERE id = sqlc.arg(id) AND status = 'RESERVED'
RETURNING *;

-- name: GetReservationByOrder :one
-- GetReservationByOrder reads an order's reservation.
SELECT * FROM reservations WHERE order_id = sqlc.arg(order_id);

-- name: CreateReleasedReservation :one
-- CreateReleasedReservation records that an order was released before it
-- had a reservation: a tombstone, RELEASED at version 1, without lines, so
-- that a ReserveStock arriving later finds the order's one reservation
-- already taken and reserves nothing. No row means the order has a
-- reservation. The insert waits on the unique index for a concurrent,
-- uncommitted CreateReservation of the same order: if that commits, this
-- inserts nothing and the caller releases the reservation it made; if it
-- rolls back, this inserts the tombstone.
INSERT INTO reservations (id, order_id, status)
VALUES (sqlc.arg(id), sqlc.arg(order_id), 'RELEASED')
ON CONFLICT (order_id) DO NOTHING
RETURNING *;

-- name: ReleaseReservation :one
-- ReleaseReservation marks an order's RESERVED reservation RELEASED and
-- returns it; no row means there is none or it is not RESERVED. The row lock
-- makes a concurrent release wait, then see RELEASED and match nothing, so
-- the stock is returned at most once.
UPDATE reservations
SET status = 'RELEASED', version = version + 1, updated_at = now()
WHERE order_id = sqlc.arg(order_id) AND status = 'RESERVED'
RETURNING *;
