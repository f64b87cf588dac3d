-- name: ListSagaSteps :many
-- ListSagaSteps returns the step rows of the sagas of ids, per saga in the
-- order they started (an action before its compensation).
SELECT * FROM saga_steps
WHERE saga_id = ANY(@saga_ids::uuid[])
ORDER BY saga_id, started_at, group_index, phase, name;
