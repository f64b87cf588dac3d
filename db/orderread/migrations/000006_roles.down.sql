-- The role stays: it is cluster-wide, and the order database uses it.
REVOKE ALL ON order_views, inbox, inbox_parked, inbox_versions, schema_migrations FROM goodgo_order;
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM goodgo_order', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
END
$$;
