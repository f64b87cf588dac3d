-- Canonical DDL: parked payloads sealed. Every service that consumes events
-- carries an identical copy of this file as one of its migrations.

-- A parked event's payload can hold personal data (an order's shipping
-- address) and may wait for an operator for days: it is stored sealed with
-- the consumer's PII keyring (AES-256-GCM, bound to consumer and event id),
-- and key_id names the key. '' marks a payload parked in the clear before
-- this migration; the reseal command seals those.
ALTER TABLE inbox_parked ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
