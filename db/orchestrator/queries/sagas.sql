-- name: GetSaga :one
-- GetSaga reads one saga.
SELECT * FROM sagas WHERE id = @id;
