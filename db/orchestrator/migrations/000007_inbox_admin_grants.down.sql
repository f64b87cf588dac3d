REVOKE UPDATE (resolved_at, resolution, resolved_by, resolution_reason, error, replay_attempts)
    ON inbox_parked FROM goodgo_orchestrator;
