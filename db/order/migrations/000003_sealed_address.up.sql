-- The shipping address is personal data: it is stored sealed with the order
-- service's PII keyring (AES-256-GCM, bound to the order id), with the id of
-- its key beside it. '' marks an address still in the clear, written before
-- this migration; `order reseal` seals those and re-seals every address
-- under the active key after a rotation.
ALTER TABLE orders
    ALTER COLUMN shipping_address TYPE BYTEA USING convert_to(shipping_address::TEXT, 'UTF8');
ALTER TABLE orders
    ADD COLUMN shipping_address_key_id TEXT NOT NULL DEFAULT '';
