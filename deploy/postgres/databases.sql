-- The demo's databases, one per service (docker-compose.yml runs this once,
-- after roles.sql, when the postgres container initialises its data
-- directory). The binaries would create them too (MIGRATE_DATABASE_URL);
-- creating them here keeps the server's layout in one place. goodgo_order_read
-- is the order service's read model (CQRS). The relay has no database: it
-- reads the three services' outboxes as goodgo_relay.
CREATE DATABASE goodgo_order;
CREATE DATABASE goodgo_order_read;
CREATE DATABASE goodgo_payment;
CREATE DATABASE goodgo_inventory;
CREATE DATABASE goodgo_orchestrator;
