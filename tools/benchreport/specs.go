package main

// Seed is one row of the "Performance Characteristics" table of the seed
// document (data-consistency-patterns, not part of this repository), with the
// bounds a measurement is held to.
type Seed struct {
	Pattern    string
	Latency    string // as the seed writes it
	Throughput string // as the seed writes it
	// MaxLatencyMs is the upper end of the seed's latency; a measured
	// latency at or below it meets the seed. 0: no latency figure.
	MaxLatencyMs float64
	// MinThroughput is the lower end of the seed's throughput; a measured
	// throughput at or above it meets the seed. 0: no figure ("Varies").
	MinThroughput float64
}

// seeds is the seed's table, in its order.
var seeds = []Seed{
	{"Saga Execution", "500ms - 2s", "100-500 sagas/s", 2000, 100},
	{"Outbox Processing", "< 100ms", "10,000 events/s", 100, 10_000},
	{"Idempotency Check", "< 10ms", "50,000 checks/s", 10, 50_000},
	{"Optimistic Lock Update", "< 50ms", "5,000 updates/s", 50, 5_000},
	{"CQRS Projection", "100ms - 1s", "1,000 events/s", 1000, 1_000},
	{"Compensation Execution", "200ms - 1s", "Varies", 1000, 0},
}

// Suite is one `go test -bench` invocation.
type Suite struct {
	// ID names the raw output file (<out>/<ID>.txt) and the suite in -only.
	ID string
	// Dir is the module directory, relative to the repository root; the
	// command runs there, inside the go.work workspace.
	Dir string
	// Pkg is the package, relative to Dir.
	Pkg string
	// Bench is the -bench regular expression.
	Bench string
	// Benchtime is the -benchtime value: a duration for benchmarks that
	// scale b.N, "Nx" for those whose one iteration is a whole workload.
	Benchtime string
	// Timeout is go test's -timeout, for all -count runs together.
	Timeout string
	// Optional, when set, names a benchmark that may not exist yet: the
	// suite is listed first (go test -list) and reported as not run when
	// the benchmark is absent, instead of failing.
	Optional string
}

// suites are the benchmarks `make bench` runs, chosen to finish within about
// 15 minutes at -count 5 on the 2-core development machine. Only the
// production configuration of each benchmark runs (for example the relay's
// default batch and workers); docs/benchmarks-relay.md explores the others.
var suites = []Suite{
	{ID: "idempotency", Dir: "platform", Pkg: "./idempotency/", Bench: "^BenchmarkCheck$", Benchtime: "2s", Timeout: "5m"},
	{ID: "optlock", Dir: "platform", Pkg: "./optlock/", Bench: "^BenchmarkUpdate$", Benchtime: "2s", Timeout: "5m"},
	{ID: "outbox-append", Dir: "platform", Pkg: "./outbox/", Bench: "^BenchmarkAppend$/^end=commit$", Benchtime: "2s", Timeout: "5m"},
	{ID: "saga", Dir: "platform", Pkg: "./saga/", Bench: "^BenchmarkSagaThroughput$", Benchtime: "2000x", Timeout: "10m"},
	// 1000 sagas per failing step: about 2-10 s each at 100-500 sagas/s.
	{ID: "saga-compensation", Dir: "platform", Pkg: "./saga/", Bench: "^BenchmarkSagaCompensation$", Benchtime: "1000x", Timeout: "10m"},
	{ID: "relay-drain", Dir: "services/outbox-relay", Pkg: "./internal/relay/", Bench: "^BenchmarkDrain$/^batch=500$/^workers=4$", Benchtime: "1x", Timeout: "10m"},
	{ID: "relay-lag", Dir: "services/outbox-relay", Pkg: "./internal/relay/", Bench: "^BenchmarkSteadyLag$/^workers=4$", Benchtime: "1x", Timeout: "10m"},
	{ID: "order", Dir: "services/order", Pkg: "./internal/grpcapi/", Bench: "^BenchmarkPlaceOrder$", Benchtime: "2s", Timeout: "5m"},
	// One iteration is a whole workload: 100k events drained, or 10 s of
	// 2,000 events/s offered (about 20 s per -count with the set-up).
	{ID: "projection", Dir: "services/order", Pkg: "./internal/projection/", Bench: "^BenchmarkProjection(Drain|Lag)$", Benchtime: "1x", Timeout: "10m"},
	{ID: "payment", Dir: "services/payment", Pkg: ".", Bench: "^Benchmark(ProcessPayment|RefundPayment)$", Benchtime: "2s", Timeout: "5m"},
	{ID: "inventory-grpc", Dir: "services/inventory", Pkg: "./internal/grpcapi/", Bench: "^Benchmark(ReserveStock|AdjustStock)$", Benchtime: "2s", Timeout: "5m"},
	{ID: "inventory-pg", Dir: "services/inventory", Pkg: "./internal/postgres/", Bench: "^BenchmarkReserve$", Benchtime: "2s", Timeout: "5m"},
	// 1000 measured sagas per in-flight level (plus the benchmark's own
	// 200 warm-up) give a p99 of ten samples; at about 100 sagas/s a run
	// takes under a minute with the environment's start. The e2e helper's
	// doc suggests 3000x -count 3; this trades samples for the 15-minute
	// budget.
	// 300 failing orders per kind at 8 in flight: a p99 of three samples,
	// about a minute per -count with the environment's start.
	{ID: "e2e-compensation", Dir: "e2e", Pkg: ".", Bench: "^BenchmarkOrderCompensation$", Benchtime: "300x", Timeout: "20m", Optional: "BenchmarkOrderCompensation"},
	{ID: "e2e", Dir: "e2e", Pkg: ".", Bench: "^BenchmarkOrderSaga$", Benchtime: "1000x", Timeout: "10m", Optional: "BenchmarkOrderSaga"},
}

// Row is one line of the report: a benchmark held against a seed row.
type Row struct {
	// Seed is the Pattern of the seed row; "" for a benchmark the seed has
	// no row for.
	Seed string
	// Suite is the ID of the suite that runs Bench; "" when no benchmark
	// measures the seed row (the report says so).
	Suite string
	// Bench is the benchmark's full name without the GOMAXPROCS suffix.
	Bench string
	// What says what the benchmark does, briefly.
	What string
	// Throughput is the unit of the throughput metric.
	Throughput string
	// CheckThroughput holds the throughput to the seed's; false where the
	// benchmark offers a fixed load or measures one serial connection.
	CheckThroughput bool
	// P50 and P99 are the units of the latency percentiles, "" when the
	// benchmark does not report them.
	P50, P99 string
	// MeanLatency takes the latency from ns/op: right only for a benchmark
	// that runs its operations one at a time.
	MeanLatency bool
	// Extra are further metrics worth showing beside the verdict.
	Extra []string
}

// rows are the report's lines: every seed row, each with the benchmarks
// that measure it, then the service calls the seed has no row for.
var rows = []Row{
	{Seed: "Saga Execution", Suite: "saga", Bench: "BenchmarkSagaThroughput/inflight=16", What: "engine, 3 no-op steps, 16 in flight", Throughput: "sagas/s", CheckThroughput: true, P50: "p50_ms", P99: "p99_ms"},
	{Seed: "Saga Execution", Suite: "saga", Bench: "BenchmarkSagaThroughput/inflight=64", What: "engine, 3 no-op steps, 64 in flight", Throughput: "sagas/s", CheckThroughput: true, P50: "p50_ms", P99: "p99_ms"},
	{Seed: "Saga Execution", Suite: "saga", Bench: "BenchmarkSagaThroughput/inflight=128", What: "engine, 3 no-op steps, 128 in flight", Throughput: "sagas/s", CheckThroughput: true, P50: "p50_ms", P99: "p99_ms"},
	{Seed: "Saga Execution", Suite: "e2e", Bench: "BenchmarkOrderSaga/inflight=8", What: "checkout saga across the five binaries, 8 orders in flight", Throughput: "sagas/s", CheckThroughput: true, P50: "p50_ms", P99: "p99_ms"},
	{Seed: "Saga Execution", Suite: "e2e", Bench: "BenchmarkOrderSaga/inflight=64", What: "checkout saga across the five binaries, 64 orders in flight", Throughput: "sagas/s", CheckThroughput: true, P50: "p50_ms", P99: "p99_ms"},

	{Seed: "Outbox Processing", Suite: "relay-drain", Bench: "BenchmarkDrain/batch=500/workers=4", What: "relay drains 100k events to the broker (defaults)", Throughput: "events/s", CheckThroughput: true},
	{Seed: "Outbox Processing", Suite: "relay-lag", Bench: "BenchmarkSteadyLag/workers=4", What: "commit-to-consumer lag at 5,000 events/s offered", Throughput: "events/s", P50: "e2e_p50_ms", P99: "e2e_p99_ms", Extra: []string{"mark_p99_ms"}},
	{Seed: "Outbox Processing", Suite: "outbox-append", Bench: "BenchmarkAppend/end=commit/events=1", What: "writer tx with 1 event, one connection", Throughput: "events/s", MeanLatency: true},
	{Seed: "Outbox Processing", Suite: "outbox-append", Bench: "BenchmarkAppend/end=commit/events=3", What: "writer tx with 3 events, one connection", Throughput: "events/s", MeanLatency: true},
	{Seed: "Outbox Processing", Suite: "outbox-append", Bench: "BenchmarkAppend/end=commit/events=100", What: "writer tx with 100 events, one connection", Throughput: "events/s", MeanLatency: true},

	{Seed: "Idempotency Check", Suite: "idempotency", Bench: "BenchmarkCheck/claim_complete", What: "first call: claim + complete on Redis, 64 concurrent callers", Throughput: "checks/s", CheckThroughput: true, P50: "p50_ms", P99: "p99_ms"},
	{Seed: "Idempotency Check", Suite: "idempotency", Bench: "BenchmarkCheck/replay", What: "retry of a completed call: replay, 64 concurrent callers", Throughput: "checks/s", CheckThroughput: true, P50: "p50_ms", P99: "p99_ms"},

	{Seed: "Optimistic Lock Update", Suite: "optlock", Bench: "BenchmarkUpdate/low_contention", What: "optlock.Contention.Update on PostgreSQL, own row per writer", Throughput: "updates/s", CheckThroughput: true, P99: "p99-ms", Extra: []string{"conflicts/update"}},
	{Seed: "Optimistic Lock Update", Suite: "optlock", Bench: "BenchmarkUpdate/high_contention", What: "optlock.Contention.Update on PostgreSQL, one hot row (switches to one atomic UPDATE)", Throughput: "updates/s", CheckThroughput: true, P99: "p99-ms", Extra: []string{"conflicts/update", "gave_up/op"}},
	{Seed: "Optimistic Lock Update", Suite: "inventory-grpc", Bench: "BenchmarkAdjustStock/low_contention", What: "inventory AdjustStock by delta over gRPC, own SKU per client", Throughput: "updates/s", CheckThroughput: true, P99: "p99-ms", Extra: []string{"conflicts/update"}},
	{Seed: "Optimistic Lock Update", Suite: "inventory-grpc", Bench: "BenchmarkAdjustStock/high_contention", What: "inventory AdjustStock by delta over gRPC, one hot SKU (group-committed when hot)", Throughput: "updates/s", CheckThroughput: true, P99: "p99-ms", Extra: []string{"conflicts/update"}},
	{Seed: "Optimistic Lock Update", Suite: "inventory-grpc", Bench: "BenchmarkAdjustStock/high_contention_versioned", What: "inventory AdjustStock with version tokens over gRPC, one hot SKU, clients re-read on Aborted", Throughput: "updates/s", CheckThroughput: true, P99: "p99-ms", Extra: []string{"conflicts/update"}},
	{Seed: "Optimistic Lock Update", Suite: "payment", Bench: "BenchmarkRefundPayment/uncontended", What: "payment RefundPayment over gRPC", Throughput: "refunds/s", CheckThroughput: true},
	{Seed: "Optimistic Lock Update", Suite: "payment", Bench: "BenchmarkRefundPayment/contended-4", What: "payment RefundPayment over gRPC, 4 per payment", Throughput: "refunds/s", CheckThroughput: true},

	{Seed: "CQRS Projection", Suite: "projection", Bench: "BenchmarkProjectionDrain", What: "order view projector drains 100k events of 20k orders (3 topics, batches of up to 1,000)", Throughput: "events/s", CheckThroughput: true},
	{Seed: "CQRS Projection", Suite: "projection", Bench: "BenchmarkProjectionLag", What: "occurred-at to view commit at 2,000 events/s offered", Throughput: "events/s", P50: "p50_ms", P99: "p99_ms", Extra: []string{"max_ms"}},
	{Seed: "Compensation Execution", Suite: "saga-compensation", Bench: "BenchmarkSagaCompensation/fail=payment", What: "engine, checkout's three steps, the first refused (nothing to undo), 16 in flight; refusal to COMPENSATED", Throughput: "sagas/s", P50: "p50_ms", P99: "p99_ms"},
	{Seed: "Compensation Execution", Suite: "saga-compensation", Bench: "BenchmarkSagaCompensation/fail=stock", What: "engine, the second step refused (one undo), 16 in flight; refusal to COMPENSATED", Throughput: "sagas/s", P50: "p50_ms", P99: "p99_ms"},
	{Seed: "Compensation Execution", Suite: "saga-compensation", Bench: "BenchmarkSagaCompensation/fail=confirm", What: "engine, the pivot refused (two undos), 16 in flight; refusal to COMPENSATED", Throughput: "sagas/s", P50: "p50_ms", P99: "p99_ms"},
	{Seed: "Compensation Execution", Suite: "e2e-compensation", Bench: "BenchmarkOrderCompensation/fail=declined", What: "checkout saga across the five binaries, card declined (order cancelled), 8 in flight; failed step to COMPENSATED", Throughput: "sagas/s", P50: "p50_ms", P99: "p99_ms", Extra: []string{"cancel_p99_ms"}},
	{Seed: "Compensation Execution", Suite: "e2e-compensation", Bench: "BenchmarkOrderCompensation/fail=out_of_stock", What: "checkout saga across the five binaries, stock short (payment refunded, order cancelled), 8 in flight; failed step to COMPENSATED", Throughput: "sagas/s", P50: "p50_ms", P99: "p99_ms", Extra: []string{"cancel_p99_ms"}},

	{Suite: "order", Bench: "BenchmarkPlaceOrder", What: "order PlaceOrder over gRPC (idempotency, order + outbox tx)", Throughput: "orders/s"},
	{Suite: "payment", Bench: "BenchmarkProcessPayment", What: "payment ProcessPayment over gRPC (idempotency, payment + outbox tx)", Throughput: "payments/s"},
	{Suite: "inventory-grpc", Bench: "BenchmarkReserveStock/low_contention", What: "inventory ReserveStock over gRPC, 256 SKUs", Throughput: "reserves/s", P99: "p99-ms"},
	{Suite: "inventory-grpc", Bench: "BenchmarkReserveStock/high_contention", What: "inventory ReserveStock over gRPC, one hot SKU, for one customer (the caller's assertion reused)", Throughput: "reserves/s", P99: "p99-ms"},
	{Suite: "inventory-grpc", Bench: "BenchmarkReserveStock/high_contention_new_users", What: "inventory ReserveStock over gRPC, one hot SKU, each call for a new customer (an assertion signed and verified per call)", Throughput: "reserves/s", P99: "p99-ms"},
	{Suite: "inventory-pg", Bench: "BenchmarkReserve/low_contention", What: "inventory Repository.Reserve alone, 256 SKUs", Throughput: "reserves/s"},
	{Suite: "inventory-pg", Bench: "BenchmarkReserve/high_contention", What: "inventory Repository.Reserve alone, one hot SKU", Throughput: "reserves/s"},
}
