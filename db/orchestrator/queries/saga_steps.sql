-- name: ListSagaSteps :many
-- ListSagaSteps returns a saga's step executions in the order they started.
SELECT * FROM saga_steps WHERE saga_id = @saga_id ORDER BY started_at, name, phase;
