-- The role stays: it is cluster-wide.
REVOKE ALL ON sagas, saga_steps, saga_audit, inbox, inbox_parked, inbox_versions, schema_migrations FROM goodgo_orchestrator;
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM goodgo_orchestrator', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
END
$$;
