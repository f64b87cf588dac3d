-- A sealed payload cannot be opened in SQL: refuse rather than lose it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM inbox_parked WHERE key_id <> '') THEN
        RAISE EXCEPTION 'inbox_parked holds sealed payloads: this migration cannot be reverted';
    END IF;
END
$$;
ALTER TABLE inbox_parked DROP COLUMN key_id;
