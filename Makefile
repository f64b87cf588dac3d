# GoodGo — the front door. `make help` lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT    := $(CURDIR)
BIN     := $(ROOT)/bin
export PATH := $(BIN):$(PATH)

# Every module of the workspace (go.work), as directories.
MODULES  = $(shell go list -m -f '{{.Dir}}')
SERVICES := order payment inventory orchestrator outbox-relay
# Pinned tool versions live in tools/<tool>/go.mod (one module per tool so
# their dependency graphs never meet).
TOOLS    := buf protoc-gen golangci-lint sqlc

TEST_FLAGS ?= -race -count=1 -timeout 10m
# The end-to-end suite starts a fresh system per scenario (about 12 minutes
# on 2 cores): a timeout of its own.
E2E_FLAGS ?= -race -count=1 -timeout 30m

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_\/.-]+:.*## / {printf "  \033[36m%-22s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

## ---- tools ---------------------------------------------------------------
.PHONY: tools
tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc $(BIN)/sqlc $(BIN)/golangci-lint ## Build the pinned tools into ./bin

$(BIN)/buf: tools/buf/go.mod
	cd tools/buf && GOWORK=off go build -o $(BIN)/ github.com/bufbuild/buf/cmd/buf
$(BIN)/protoc-gen-go: tools/protoc-gen/go.mod
	cd tools/protoc-gen && GOWORK=off go build -o $(BIN)/ google.golang.org/protobuf/cmd/protoc-gen-go
$(BIN)/protoc-gen-go-grpc: tools/protoc-gen/go.mod
	cd tools/protoc-gen && GOWORK=off go build -o $(BIN)/ google.golang.org/grpc/cmd/protoc-gen-go-grpc
$(BIN)/sqlc: tools/sqlc/go.mod
	cd tools/sqlc && GOWORK=off go build -o $(BIN)/ github.com/sqlc-dev/sqlc/cmd/sqlc
$(BIN)/golangci-lint: tools/golangci-lint/go.mod
	cd tools/golangci-lint && GOWORK=off go build -o $(BIN)/ github.com/golangci/golangci-lint/v2/cmd/golangci-lint
# Compose v2 as the docker CLI plugin of `make compose-test` (not in
# `tools`: only that target needs it).
$(BIN)/docker-compose: tools/compose/go.mod
	cd tools/compose && GOWORK=off go build -o $(BIN)/docker-compose \
	  -ldflags "-X github.com/docker/compose/v2/internal.Version=$$(GOWORK=off go list -m -f '{{.Version}}' github.com/docker/compose/v2)" \
	  github.com/docker/compose/v2/cmd

## ---- code generation ------------------------------------------------------
.PHONY: gen gen/proto gen/sqlc gen/k8s
gen: gen/proto gen/sqlc gen/k8s ## Regenerate all generated code (protobuf, sqlc, the Kubernetes PrometheusRule)

gen/proto: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-go-grpc ## Regenerate protobuf and gRPC code
	cd proto && buf generate

gen/sqlc: $(BIN)/sqlc ## Regenerate sqlc query code from db/
	cd db && sqlc generate

gen/k8s: ## Regenerate deploy/k8s's PrometheusRule from deploy/prometheus/rules/goodgo.yml
	cd deploy/k8s && go generate ./...

.PHONY: proto/baseline
proto/baseline: $(BIN)/buf ## Record the current schemas as the buf breaking baseline (after a release)
	cd proto && buf build -o baseline.binpb

## ---- verification ---------------------------------------------------------
.PHONY: verify verify/gen verify/proto verify/sqlc verify/tidy verify/fmt verify/migrations verify/docker verify/rules
verify: verify/fmt verify/tidy verify/migrations verify/docker verify/rules verify/proto verify/sqlc verify/gen ## Fail if anything generated, tidied or formatted is stale

verify/gen: gen ## Fail if regenerating changes the tree
	@if [ -n "$$(git status --porcelain -- proto services platform db deploy/k8s)" ]; then \
	  echo "generated code is stale; run 'make gen' and commit:"; git status --porcelain -- proto services platform db deploy/k8s; exit 1; fi

verify/proto: $(BIN)/buf ## buf lint, and buf breaking against the committed baseline
	cd proto && buf lint && buf breaking --against baseline.binpb

verify/sqlc: $(BIN)/sqlc ## sqlc vet (queries compile against the schema)
	cd db && sqlc vet

verify/tidy: ## Fail if any go.mod/go.sum is not tidy
	@for m in $(MODULES); do (cd $$m && go mod tidy -diff >/dev/null) || { echo "not tidy: $$m (run 'make tidy')"; exit 1; }; done

verify/fmt: ## Fail if any Go file is not gofmt'ed
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The image's module-download step runs before the sources are copied, so
# it sees only the go.mod/go.sum files the Dockerfile copies: every module of
# go.work needs its go.mod, and its go.sum when it has one, or `go mod
# download` fails inside the build.
verify/docker: ## Fail if deploy/docker/Dockerfile does not copy every workspace module's go.mod/go.sum
	@for m in $$(go list -m -f '{{.Dir}}'); do rel=$${m#$(ROOT)/}; \
	  for f in go.mod go.sum; do [ -f "$$m/$$f" ] || continue; \
	    grep -Eq "^COPY (.* )?$$rel/$$f( |$$)" deploy/docker/Dockerfile || { echo "deploy/docker/Dockerfile does not copy $$rel/$$f before go mod download"; exit 1; }; \
	  done; done

# promtool comes with the OS's prometheus package (.ci/run installs it).
verify/rules: ## promtool check and unit-test the alert rules (deploy/prometheus/rules)
	@command -v promtool >/dev/null || { echo "promtool not found: install the prometheus package (apt-get install prometheus)"; exit 1; }
	promtool check rules deploy/prometheus/rules/goodgo.yml
	cd deploy/prometheus/rules && promtool test rules goodgo_test.yml

verify/migrations: ## Fail if a service's copy of the outbox/inbox/saga DDL drifts from db/{outbox,inbox,saga}
	@for s in order payment inventory; do cmp -s db/outbox/schema/outbox.sql db/$$s/migrations/000002_outbox.up.sql || { echo "db/$$s outbox migration differs from db/outbox/schema/outbox.sql"; exit 1; }; done
	@for s in orchestrator orderread; do cmp -s db/inbox/schema/inbox.sql db/$$s/migrations/000002_inbox.up.sql || { echo "db/$$s inbox migration differs from db/inbox/schema/inbox.sql"; exit 1; }; done
	@cmp -s db/inbox/schema/inbox_sealed.sql db/orchestrator/migrations/000004_inbox_sealed.up.sql || { echo "db/orchestrator sealed-inbox migration differs from db/inbox/schema/inbox_sealed.sql"; exit 1; }
	@cmp -s db/inbox/schema/inbox_sealed.sql db/orderread/migrations/000003_inbox_sealed.up.sql || { echo "db/orderread sealed-inbox migration differs from db/inbox/schema/inbox_sealed.sql"; exit 1; }
	@cmp -s db/inbox/schema/inbox_resolution.sql db/orchestrator/migrations/000006_inbox_resolution.up.sql || { echo "db/orchestrator inbox-resolution migration differs from db/inbox/schema/inbox_resolution.sql"; exit 1; }
	@cmp -s db/inbox/schema/inbox_resolution.sql db/orderread/migrations/000004_inbox_resolution.up.sql || { echo "db/orderread inbox-resolution migration differs from db/inbox/schema/inbox_resolution.sql"; exit 1; }
	@cmp -s db/saga/schema/saga.sql db/orchestrator/migrations/000001_sagas.up.sql || { echo "db/orchestrator saga migration differs from db/saga/schema/saga.sql"; exit 1; }

.PHONY: tidy fmt lint
tidy: ## go mod tidy every module
	@for m in $(MODULES); do (cd $$m && go mod tidy); done

fmt: ## gofmt every Go file
	gofmt -w $$(git ls-files '*.go')

lint: $(BIN)/golangci-lint ## golangci-lint every module
	@for m in $(MODULES); do echo "lint $$m"; (cd $$m && golangci-lint run --config $(ROOT)/.golangci.yml ./...) || exit 1; done

## ---- build and test -------------------------------------------------------
.PHONY: build test fuzz bench e2e chaos bench/e2e
build: ## Build the five binaries into ./bin
	@for s in $(SERVICES); do go build -o $(BIN)/$$s ./services/$$s; done

# The end-to-end suite runs last and alone: its five binaries hold many
# PostgreSQL connections, and packages run in parallel would exceed the
# server's max_connections.
test: ## Unit, integration and end-to-end tests (real PostgreSQL and Redis), race detector on
	go test $(TEST_FLAGS) $(addsuffix /...,$(filter-out $(ROOT)/e2e,$(MODULES)))
	go test $(E2E_FLAGS) ./e2e/...

# Every fuzz target (func FuzzX in a _test.go file) for FUZZ_TIME each, new
# inputs explored beyond the committed seed corpora (testdata/fuzz/FuzzX).
# `make test` already runs every target's seeds as ordinary tests. The
# budget is a count of executions: a duration races Go 1.26's fuzzing
# coordinator, which then fails a target with "context deadline exceeded"
# and no crasher (golang/go#75804, fixed in Go 1.27).
FUZZ_TIME ?= 20000x
fuzz: ## Run every fuzz target briefly (FUZZ_TIME executions each, default 20000x)
	@grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*(' platform services devbroker e2e goodgoctl | sort -u | \
	while IFS=: read -r file decl; do \
	  name=$${decl#func }; name=$${name%(}; dir=$$(dirname "$$file"); \
	  echo "fuzz $$name in ./$$dir for $(FUZZ_TIME)"; \
	  go test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZ_TIME) "./$$dir" || exit 1; \
	done

# Pinned flags per benchmark live in tools/benchreport/specs.go. BENCH_COUNT
# (default 5) sets -count; BENCH_ONLY=<regexp of suite IDs> runs a subset
# (docs untouched); BENCH_BENCHTIME=<id>=<value>,… overrides -benchtime.
bench: ## Benchmarks against the real servers: medians beside the seed's table (docs/benchmarks.md)
	cd tools/benchreport && GOWORK=off go build -o $(BIN)/benchreport .
	$(BIN)/benchreport -root $(ROOT) -count $(or $(BENCH_COUNT),5)

# docker-compose.yml on a Docker engine the test starts (dockerd from
# Debian's docker.io, its own data root and socket), with the images built
# locally (deploy/docker/compose.test.yml): up --wait, orders placed from a
# container and confirmed, the orchestrator crashed and back, an audit,
# down -v. Needs root, docker.io and debootstrap; the Debian base is
# cached in bin/compose-test. README "docker compose" has the timings.
COMPOSE_TEST_TIMEOUT ?= 45m
.PHONY: compose-test
compose-test: $(BIN)/docker-compose ## docker compose for real: a local Docker engine, the stack up, orders confirmed, a crash survived, down
	cd deploy/docker && GOODGO_COMPOSE_TEST=1 go test -race -count=1 -timeout $(COMPOSE_TEST_TIMEOUT) -run '^TestComposeRunsForReal$$' -v .

e2e: ## End-to-end: the five binaries, the dev broker, local PostgreSQL and Redis; invariants after every scenario
	go test $(E2E_FLAGS) ./e2e/...

# The crash matrix (e2e TestCrashMatrix): one binary built with the tag
# failpoints SIGKILLs itself at one boundary per scenario, under load, and
# is restarted. The fault matrix (e2e TestFaultMatrix): random kills, network
# faults through TCP proxies, Redis lost, PostgreSQL crashed. `make e2e`
# runs five of their nineteen scenarios.
chaos: ## Crash and fault matrices under load: every failpoint, random kills, network faults, Redis and PostgreSQL down (~11 min)
	E2E_CHAOS=1 go test -race -count=1 -v -run 'TestCrashMatrix|TestFaultMatrix' -timeout 40m ./e2e/

bench/e2e: ## The whole saga on this machine at 8 and 64 orders in flight: sagas/s and p50/p99 PlaceOrder -> CONFIRMED (plain binaries)
	go test -run '^$$' -bench BenchmarkOrderSaga -benchtime 3000x -count 3 -timeout 30m ./e2e/

## ---- demo -----------------------------------------------------------------
.PHONY: run up down
# goodgoctl run starts the development broker, the five binaries and the
# load generator from ./bin, waits until each is ready, places a first order
# and prints its outcome and where to look; Ctrl-C stops every process.
# RUN_FLAGS passes flags (goodgoctl run -h), e.g. RUN_FLAGS='-rate 5'.
run: build ## One command, no Docker: the whole system on local PostgreSQL and Redis with a demo client, until Ctrl-C
	@for c in devbroker loadgen goodgoctl; do go build -o $(BIN)/$$c ./$$c; done
	$(BIN)/goodgoctl run -bin $(BIN) $(RUN_FLAGS)

up: ## Start the demo (docker compose)
	docker compose up --build

down: ## Stop the demo
	docker compose down -v
