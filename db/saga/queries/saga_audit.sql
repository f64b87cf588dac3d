-- name: ListSagaAudit :many
-- ListSagaAudit returns a saga's audit trail, oldest first.
SELECT * FROM saga_audit WHERE saga_id = @saga_id ORDER BY id;
