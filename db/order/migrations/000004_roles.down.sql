-- The roles stay: they are cluster-wide and may serve other databases.
REVOKE ALL ON orders, order_items, outbox, schema_migrations FROM goodgo_order;
REVOKE ALL ON outbox, outbox_lanes FROM goodgo_relay;
DO $$
BEGIN
    EXECUTE format('REVOKE CONNECT ON DATABASE %I FROM goodgo_order, goodgo_relay', current_database());
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO PUBLIC', current_database());
END
$$;
