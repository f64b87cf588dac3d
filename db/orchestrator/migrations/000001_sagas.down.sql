DROP TABLE saga_audit;
DROP TABLE saga_steps;
DROP TABLE sagas;
