-- The demo's database roles (docker-compose.yml runs this once, when the
-- postgres container initialises its data directory): what an administrator
-- does on a managed PostgreSQL before the first migration (README "Database
-- roles"). The migrations, run as the superuser here, find the roles and
-- grant them what each binary needs. Demo passwords: never reuse them.
CREATE ROLE goodgo_order LOGIN PASSWORD 'goodgo_order';
CREATE ROLE goodgo_payment LOGIN PASSWORD 'goodgo_payment';
CREATE ROLE goodgo_inventory LOGIN PASSWORD 'goodgo_inventory';
CREATE ROLE goodgo_orchestrator LOGIN PASSWORD 'goodgo_orchestrator';
CREATE ROLE goodgo_relay LOGIN PASSWORD 'goodgo_relay';
