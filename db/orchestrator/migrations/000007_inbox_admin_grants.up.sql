-- Operators resolve parked events through the orchestrator's
-- ParkedEventService (platform/inbox Admin): the orchestrator marks them
-- replayed or discarded, with who and why, and records a replay that
-- failed again. It still deletes nothing and rewrites neither the event
-- nor its payload (beyond `orchestrator reseal`).
GRANT UPDATE (resolved_at, resolution, resolved_by, resolution_reason, error, replay_attempts)
    ON inbox_parked TO goodgo_orchestrator;
