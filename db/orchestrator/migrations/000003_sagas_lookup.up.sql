-- SagaService lists a customer's sagas (started_by) and finds an order's
-- saga (correlation_id) without scanning every saga.
CREATE INDEX sagas_started_by_created_idx ON sagas (started_by, created_at DESC, id DESC);
CREATE INDEX sagas_correlation_idx ON sagas (correlation_id);
