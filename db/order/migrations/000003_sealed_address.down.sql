-- A sealed address cannot be opened in SQL: going back needs every address
-- in the clear, which no released command writes. Refuse rather than lose it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM orders WHERE shipping_address_key_id <> '') THEN
        RAISE EXCEPTION 'orders hold sealed shipping addresses: this migration cannot be reverted';
    END IF;
END
$$;
ALTER TABLE orders DROP COLUMN shipping_address_key_id;
ALTER TABLE orders
    ALTER COLUMN shipping_address TYPE JSONB USING convert_from(shipping_address, 'UTF8')::JSONB;
