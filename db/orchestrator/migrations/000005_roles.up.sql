-- Database roles (README "Database roles"). Migrations run as the owner of
-- the database and its tables; the orchestrator connects as
-- goodgo_orchestrator, which may use its saga tables and its inbox and
-- nothing else, and is the only role (besides the owner) that may connect.
--
-- Roles are cluster-wide: created here when missing (the migrating role
-- needs CREATEROLE for that), or created beforehand by an administrator,
-- who also gives them passwords (or certificate or IAM authentication).
-- Concurrent migrations of several databases may race to create a role:
-- losing the race is success.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'goodgo_orchestrator') THEN
        BEGIN
            CREATE ROLE goodgo_orchestrator LOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role goodgo_orchestrator does not exist, and % may not create it', current_user
                    USING HINT = 'create the GoodGo roles first (README "Database roles"), or grant CREATEROLE to the migrating role';
        END;
    END IF;
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO goodgo_orchestrator', current_database());
END
$$;

-- The saga engine (db/saga/queries): sagas and steps are written and
-- rewritten, the audit log only appended to; nothing is deleted.
GRANT SELECT, INSERT, UPDATE ON sagas, saga_steps TO goodgo_orchestrator;
GRANT SELECT, INSERT ON saga_audit TO goodgo_orchestrator;
-- The inbox (db/inbox/queries). ON CONFLICT (…) DO NOTHING needs SELECT on
-- the conflict columns; the version row is locked FOR UPDATE and raised.
GRANT SELECT, INSERT ON inbox, inbox_parked TO goodgo_orchestrator;
-- `orchestrator reseal` seals parked payloads again under the active key.
GRANT UPDATE (payload, key_id) ON inbox_parked TO goodgo_orchestrator;
GRANT SELECT, INSERT, UPDATE ON inbox_versions TO goodgo_orchestrator;
-- An orchestrator that does not migrate checks the schema version at start.
GRANT SELECT ON schema_migrations TO goodgo_orchestrator;
