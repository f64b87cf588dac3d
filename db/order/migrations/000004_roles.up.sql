-- Database roles (README "Database roles"). Migrations run as the owner of
-- the database and its tables; the service connects as goodgo_order, which
-- may use its business tables and append to its outbox but not read,
-- update or delete it; the outbox relay connects as goodgo_relay, which may
-- read, mark and delete outbox rows and lease lanes, and nothing else.
--
-- Roles are cluster-wide: created here when missing (the migrating role
-- needs CREATEROLE for that), or created beforehand by an administrator,
-- who also gives them passwords (or certificate or IAM authentication).
-- Concurrent migrations of several databases may race to create a role:
-- losing the race is success.
DO $$
DECLARE
    r TEXT;
BEGIN
    FOREACH r IN ARRAY ARRAY['goodgo_order', 'goodgo_relay'] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I LOGIN', r);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN NULL;
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'role % does not exist, and % may not create it', r, current_user
                        USING HINT = 'create the GoodGo roles first (README "Database roles"), or grant CREATEROLE to the migrating role';
            END;
        END IF;
    END LOOP;
    -- Only the service and the relay may connect: no other service's role.
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO goodgo_order, goodgo_relay', current_database());
END
$$;

-- The service: what its queries need (db/order/queries), no DELETE.
GRANT SELECT, INSERT, UPDATE ON orders, order_items TO goodgo_order;
-- Append only: the writer's INSERT has no RETURNING and no ON CONFLICT
-- (which would need SELECT), and the identity column needs no sequence
-- privilege.
GRANT INSERT ON outbox TO goodgo_order;
-- A service that does not migrate checks the schema version at start.
GRANT SELECT ON schema_migrations TO goodgo_order;

-- The relay: read, mark (published, parked, failed attempts) and delete
-- outbox rows; seed, claim, renew and release lanes.
GRANT SELECT, UPDATE, DELETE ON outbox TO goodgo_relay;
GRANT SELECT, INSERT, UPDATE ON outbox_lanes TO goodgo_relay;
