// Package e2e tests the five GoodGo binaries as processes: built from
// source, started against the local PostgreSQL and Redis and an in-process
// development Kafka broker, and driven over their real network interfaces
// with a gRPC client (`make e2e`).
//
// Each test starts its own environment (env_test.go): fresh databases
// named goodgo_test_e2e_<rand>_<service>, created by the binaries and
// dropped WITH (FORCE) at the end; an idempotency key prefix of its own in
// Redis, deleted at the end; a broker; the five -race binaries wired to
// each other. Binaries can be killed (SIGKILL), paused (SIGSTOP) and
// restarted on their former gRPC port and databases. On request an
// environment puts TCP proxies between the orchestrator and its peers and
// in front of the broker, and runs a Redis and a PostgreSQL server of its
// own (envOptions).
//
// After every scenario CheckInvariants (invariants_test.go) runs the
// consistency auditor (goodgoctl/audit) over the services' gRPC APIs as an
// operator: every order CONFIRMED or CANCELLED, its saga ended alike;
// CONFIRMED ⇔ payment captured, not refunded, stock reserved; CANCELLED ⇒
// no net charge, no held stock; money conserved (captured − refunded =
// CONFIRMED totals); stock never negative and reserved stock equal to the
// CONFIRMED orders' quantities. It then reads each service's own database
// and the Kafka topics for what lies below the APIs: every order visible
// to the auditor (it has a saga), stock conserved against the test's
// baseline, every outbox row published and on its topic, nothing else on
// the topics, each effect's event exactly once, no parked inbox event. A
// self-test corrupts each table and expects the checks to fail.
//
// Scenarios: TestSagaOutcomes (happy path, declined card, amount limit,
// insufficient stock, contended last units), TestOrchestratorKilledMidFlight
// (200 orders, SIGKILL and restart of the orchestrator, once with sagas
// spread over all steps and once with 60 of them waiting on a frozen
// payment), TestPaymentServiceDown (payment hung then back, killed then
// restarted, hung past a short saga deadline), TestCrashMatrix (one
// binary, built with the tag failpoints, SIGKILLs itself at one named
// boundary — platform/failpoint — while the load generator places 40
// orders, and is restarted; each scenario logs orders placed, faults
// injected, violations and the time to drain; three of the nine scenarios
// run unless E2E_CHAOS=1, as `make chaos` sets), TestFaultMatrix (under
// the same load: random kills one and two at once, latency, resets,
// timeouts and 10 s cuts through platform/tcpproxy between the
// orchestrator and its peers and in front of the broker, a private Redis
// lost for 10 s and back empty, a private PostgreSQL crashed and
// restarted; two of the nine scenarios run unless E2E_CHAOS=1),
// TestReadModelEqualsTheWriteSide (the CQRS read model held to the write
// side by the auditor across a SIGKILL of its projector's binary, then
// rebuilt with `order rebuild-read-model` under reads that never fail nor
// go back), TestInventoryRestartUnderLoadCancelsNoGoodOrder (good orders at 20/s
// while inventory is SIGKILLed and restarted 3 s later: none cancelled),
// and the foundation's TestBinariesStartServeAndStop.
//
// TestMakeRun runs `goodgoctl run` (make run) in a process group of its
// own: the first order CONFIRMED with its saga COMPLETED, the demo client's
// sagas, then SIGINT, exit 0 and no process of the group left.
//
// Observability: TestRulesAndDashboardsNameExportedMetrics scrapes every
// binary and the auditor under a trickle of orders and requires every
// metric the alert rules (deploy/prometheus/rules) and dashboards
// (deploy/grafana/dashboards) name to be exported, then, where the
// prometheus binary is installed, evaluates every query in a real
// Prometheus scraping the system; TestOneTracePerOrder receives the
// binaries' spans over OTLP and finds each order's life in one trace.
//
// BenchmarkOrderSaga (`make bench/e2e`) measures the whole saga with plain
// binaries: sagas/s and PlaceOrder → CONFIRMED percentiles, observed on the
// order topic, plus the CPU each process used. Flags: -e2e.inflight
// (orders in flight, comma-separated levels, default 8,64), -e2e.env
// (svc:NAME=VALUE,… extra settings for the binaries), -e2e.profile=DIR
// (each binary's CPU, block and mutex profiles) and -e2e.statements (a
// private PostgreSQL with pg_stat_statements: the costliest statements
// per saga). E2E_LOGS=1 prints every binary's log even
// when a test passes.
package e2e
