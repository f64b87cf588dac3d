-- Database roles (README "Database roles"). The read database belongs to
-- the order service, which hosts the projector and the query RPCs: it
-- connects as goodgo_order (the role of its write database too), which may
-- use the view and its inbox and nothing else. A rebuild creates and swaps
-- tables, so it runs as the owner (MIGRATE_READ_DATABASE_URL).
--
-- goodgo_order is created here when missing, as in db/order: the two
-- databases may be migrated in either order.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'goodgo_order') THEN
        BEGIN
            CREATE ROLE goodgo_order LOGIN;
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN NULL;
            WHEN insufficient_privilege THEN
                RAISE EXCEPTION 'role goodgo_order does not exist, and % may not create it', current_user
                    USING HINT = 'create the GoodGo roles first (README "Database roles"), or grant CREATEROLE to the migrating role';
        END;
    END IF;
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO goodgo_order', current_database());
END
$$;

-- The projector rewrites view rows; nothing is deleted.
GRANT SELECT, INSERT, UPDATE ON order_views TO goodgo_order;
-- Its inbox (processed event ids) and parked events, as platform/inbox.
GRANT SELECT, INSERT ON inbox, inbox_parked TO goodgo_order;
GRANT UPDATE (payload, key_id) ON inbox_parked TO goodgo_order;
GRANT SELECT, INSERT, UPDATE ON inbox_versions TO goodgo_order;
GRANT SELECT ON schema_migrations TO goodgo_order;
-- A rebuild's swap renames tables: the new order_views gets these grants
-- from the rebuild itself (projection.Rebuild copies them).
