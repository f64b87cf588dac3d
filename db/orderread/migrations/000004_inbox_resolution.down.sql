DROP INDEX inbox_parked_list_idx;
ALTER TABLE inbox_parked
    DROP COLUMN resolution,
    DROP COLUMN resolved_by,
    DROP COLUMN resolution_reason,
    DROP COLUMN replay_attempts;
