DROP INDEX IF EXISTS sagas_correlation_idx;
DROP INDEX IF EXISTS sagas_started_by_created_idx;
