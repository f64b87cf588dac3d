package main

import (
	"fmt"
	"os"
	"time"

	"github.com/goodgo/goodgo/platform/bootstrap"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/saga"
)

// Config is the orchestrator's configuration, read once from the environment
// by loadConfig. Every variable has a default that works on a developer
// machine.
type Config struct {
	// ServiceConfig: GRPC_ADDR (127.0.0.1:50054), HTTP_ADDR
	// (127.0.0.1:9104), the orchestrator's certificate (with which it calls
	// the services and signs its on-behalf-of assertions) and the token
	// issuer of SagaService's users, its rate limits, its own database
	// (saga state, step log, audit and inbox; role goodgo_orchestrator),
	// Redis with the idempotency keys of RetrySaga and AbortSaga, and the
	// PII keys that seal parked inbox payloads and replies kept for replay.
	bootstrap.ServiceConfig
	// Kafka is the cluster the order events are consumed from:
	// KAFKA_BROKERS, TLS (KAFKA_TLS, KAFKA_CA_FILE, KAFKA_TLS_*) and SASL
	// (KAFKA_SASL_*).
	Kafka config.Kafka
	// OrderAddr, PaymentAddr and InventoryAddr are the services the saga
	// steps call (ORDER_ADDR, PAYMENT_ADDR, INVENTORY_ADDR).
	OrderAddr, PaymentAddr, InventoryAddr string
	// ContextKeys encrypt the saga context at rest (SAGA_CONTEXT_KEYS
	// "kid:base64,…" of 32-byte AES-256 keys; SAGA_CONTEXT_ACTIVE_KEY,
	// default the only key id).
	ContextKeys *keyring.Keyring
	// Saga tunes the saga engine.
	Saga SagaConfig
	// Reconcile tunes the reconciler of orders without a saga.
	Reconcile ReconcileConfig
}

// ReconcileConfig tunes the reconciler (internal/reconciler), which starts
// the saga of orders still PENDING without one.
type ReconcileConfig struct {
	// Interval is the time between passes (RECONCILE_INTERVAL, default
	// 30s; 0 disables the reconciler).
	Interval time.Duration
	// After is the age from which a PENDING order without a saga is
	// reconciled (RECONCILE_AFTER, default SAGA_DEADLINE + 30s; at least
	// 1s).
	After time.Duration
}

// SagaConfig tunes the saga engine (platform/saga).
type SagaConfig struct {
	// OrchestratorID names this replica in leases and audit rows
	// (ORCHESTRATOR_ID, default "<hostname>-<pid>"); unique per replica.
	OrchestratorID string
	// Deadline bounds each saga (SAGA_DEADLINE, default 30s).
	Deadline time.Duration
	// StepTimeout bounds each step call (SAGA_STEP_TIMEOUT, default 5s).
	StepTimeout time.Duration
	// StepBudget is how long a step whose outcome stays unknown (a
	// neighbour down or restarting) is retried, from its first call
	// (SAGA_STEP_BUDGET; default: until the saga deadline, saga.UntilDeadline).
	// With the default, a neighbour back within the deadline never makes a
	// saga give up; a shorter budget turns sagas back sooner; 0: the step
	// gives up after StepAttempts calls, whatever the time (the behaviour
	// before issue 10).
	StepBudget time.Duration
	// StepAttempts is the least number of calls of such a step before it
	// gives up on its budget (SAGA_STEP_ATTEMPTS, default 12; backoff from
	// 100 ms doubling to 2 s); the saga deadline ends the retries anyway.
	StepAttempts int
	// Workers bounds the sagas executed at once (SAGA_WORKERS, default 64).
	Workers int
	// LeaseTTL bounds how long a crashed replica's sagas wait before another
	// takes them over (SAGA_LEASE_TTL, default 3s): leases are renewed every
	// third of it, so the wait is 2/3 to all of it, plus PollInterval.
	LeaseTTL time.Duration
	// PollInterval is how often the recovery loop looks for such sagas
	// (SAGA_POLL_INTERVAL, default 500ms).
	PollInterval time.Duration
	// CompensationLimit is how long a saga tries to compensate before it is
	// PARKED for an operator (SAGA_COMPENSATION_LIMIT, default 5m).
	CompensationLimit time.Duration
	// DenyUsers may not have sagas act for them (SAGA_DENY_USERS,
	// comma-separated user ids; default none).
	DenyUsers []string
}

// loadConfig reads the configuration through lookup (os.LookupEnv in main).
// The error names every bad variable, one "NAME: problem" line each.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	e := config.NewEnv(lookup)
	c := Config{
		ServiceConfig: bootstrap.LoadServiceConfig(e, "orchestrator", "127.0.0.1:50054", "127.0.0.1:9104"),
		Kafka:         config.LoadKafka(e),
		OrderAddr:     e.HostPort("ORDER_ADDR", "127.0.0.1:50051"),
		PaymentAddr:   e.HostPort("PAYMENT_ADDR", "127.0.0.1:50052"),
		InventoryAddr: e.HostPort("INVENTORY_ADDR", "127.0.0.1:50053"),
		Saga: SagaConfig{
			OrchestratorID:    e.String("ORCHESTRATOR_ID", defaultReplicaID()),
			Deadline:          positive(e, "SAGA_DEADLINE", saga.DefaultDeadline),
			StepTimeout:       positive(e, "SAGA_STEP_TIMEOUT", saga.DefaultStepTimeout),
			StepBudget:        e.Duration("SAGA_STEP_BUDGET", saga.UntilDeadline),
			StepAttempts:      e.Int("SAGA_STEP_ATTEMPTS", 12),
			Workers:           e.Int("SAGA_WORKERS", saga.DefaultWorkers),
			LeaseTTL:          positive(e, "SAGA_LEASE_TTL", saga.DefaultLeaseTTL),
			PollInterval:      positive(e, "SAGA_POLL_INTERVAL", saga.DefaultPollInterval),
			CompensationLimit: positive(e, "SAGA_COMPENSATION_LIMIT", saga.DefaultCompensationLimit),
			DenyUsers:         e.List("SAGA_DENY_USERS", nil),
		},
	}
	c.Reconcile = ReconcileConfig{
		Interval: e.Duration("RECONCILE_INTERVAL", 30*time.Second),
		After:    e.Duration("RECONCILE_AFTER", c.Saga.Deadline+30*time.Second),
	}
	if c.Reconcile.Interval < 0 {
		e.Invalid("RECONCILE_INTERVAL", "must not be negative (0 disables the reconciler)")
	}
	if c.Reconcile.After < time.Second {
		e.Invalid("RECONCILE_AFTER", "must be at least 1s")
	}
	c.ContextKeys = e.Keyring(config.SagaContextKeys, c.Dev)
	if c.Saga.StepAttempts < 1 {
		e.Invalid("SAGA_STEP_ATTEMPTS", fmt.Sprintf("must be at least 1 (got %d)", c.Saga.StepAttempts))
	}
	if c.Saga.Workers < 1 {
		e.Invalid("SAGA_WORKERS", fmt.Sprintf("must be at least 1 (got %d)", c.Saga.Workers))
	}
	if c.Saga.LeaseTTL < 300*time.Millisecond {
		e.Invalid("SAGA_LEASE_TTL", "must be at least 300ms (leases are renewed every third of it)")
	}
	return c, e.Err()
}

// positive reads a duration that must be above zero.
func positive(e *config.Env, name string, def time.Duration) time.Duration {
	d := e.Duration(name, def)
	if d <= 0 {
		e.Invalid(name, "must be positive")
		return def
	}
	return d
}

// defaultReplicaID is unique per process on a host and per pod in
// Kubernetes, where the hostname is the pod name.
func defaultReplicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "orchestrator"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}
