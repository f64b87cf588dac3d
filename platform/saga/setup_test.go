package saga_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/saga"
	"github.com/goodgo/goodgo/platform/servicetest"
)

// migrations is the canonical saga DDL as a one-file migration set: the
// platform module does not import the db module.
var migrations = func() fstest.MapFS {
	ddl, err := os.ReadFile("../../db/saga/schema/saga.sql")
	if err != nil {
		panic(err)
	}
	return fstest.MapFS{"000001_sagas.up.sql": {Data: ddl}}
}()

var testKey = bytes.Repeat([]byte{7}, keyring.KeySize)

func newKeys(t testing.TB) *keyring.Keyring {
	t.Helper()
	k, err := keyring.New("k1", map[string][]byte{"k1": testKey})
	require.NoError(t, err)
	return k
}

// newDB returns a pool on a fresh database with the saga schema.
func newDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	_, pool := pgtest.NewDatabase(t, migrations)
	return pool
}

// fastOptions are engine options scaled down for tests.
func fastOptions(owner string) saga.Options {
	return saga.Options{
		Owner:             owner,
		Workers:           16,
		LeaseTTL:          600 * time.Millisecond,
		PollInterval:      50 * time.Millisecond,
		Deadline:          10 * time.Second,
		StepTimeout:       2 * time.Second,
		Retry:             saga.RetryPolicy{MaxAttempts: 3, Backoff: backoff.Policy{Min: 5 * time.Millisecond, Max: 20 * time.Millisecond}},
		CompensationRetry: backoff.Policy{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond},
		CompensationLimit: 10 * time.Second,
		InlineRetryWait:   100 * time.Millisecond,
		StatsInterval:     50 * time.Millisecond,
	}
}

// engine is a running Engine with its registry.
type engine struct {
	*saga.Engine
	reg  *prometheus.Registry
	stop func() // stops Run and waits for it
}

// startEngine builds an engine on db and runs it until the test ends.
func startEngine(t testing.TB, db saga.DB, opts saga.Options, defs ...*saga.Definition) *engine {
	t.Helper()
	return startEngineK(t, db, newKeys(t), opts, defs...)
}

func startEngineK(t testing.TB, db saga.DB, keys *keyring.Keyring, opts saga.Options, defs ...*saga.Definition) *engine {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	e, err := saga.New(db, keys, opts, defs...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return &engine{Engine: e, reg: reg, stop: stop}
}

// waitState waits until saga id is in state.
func waitState(t testing.TB, e *engine, id uuid.UUID, state saga.State) saga.Saga {
	t.Helper()
	return waitSaga(t, e, id, fmt.Sprintf("reached %s", state), func(s saga.Saga) bool { return s.State == state })
}

// waitSaga waits until saga id is as ok wants it (what says how, for the
// failure) and returns it.
func waitSaga(t testing.TB, e *engine, id uuid.UUID, what string, ok func(saga.Saga) bool) saga.Saga {
	t.Helper()
	var s saga.Saga
	require.Eventually(t, func() bool {
		var err error
		s, err = e.Get(context.Background(), id)
		require.NoError(t, err)
		return ok(s)
	}, 15*time.Second, 5*time.Millisecond, "saga %s never %s", id, what)
	return s
}

// counter returns the value of the series of name with labels (name,
// value pairs): a counter's or a gauge's value, a histogram's sample count;
// 0 when there is none.
func counter(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	v, _ := servicetest.LookupMetric(t, reg, name, labels...)
	return v
}

// requireCounter waits for the metric to reach want. The engine records a
// saga's outcome after the transition that ends it commits, so a test that
// has seen the final state may look a moment too early.
func requireCounter(t testing.TB, reg *prometheus.Registry, want float64, name string, labels ...string) {
	t.Helper()
	require.Eventually(t, func() bool { return counter(t, reg, name, labels...) == want }, 5*time.Second, 5*time.Millisecond,
		"%s%v never reached %v", name, labels, want)
}

// world is the fake neighbour services of the test sagas: each call is
// counted per idempotency key and takes effect once per key, as the real
// services do; hooks inject failures, delays and crashes per step and phase.
type world struct {
	mu       sync.Mutex
	calls    map[string]int         // by idempotency key
	effects  map[string]int         // by idempotency key: 1 once applied
	orders   map[uuid.UUID][]string // effects per saga in the order they happened: "b", "-b"
	keys     map[string][]string
	hooks    map[string]func(ctx context.Context, x *saga.Execution) error
	after    map[string]func(ctx context.Context, x *saga.Execution) error
	active   map[uuid.UUID]int
	maxConc  atomic.Int32
	sagaData map[uuid.UUID][]byte
}

func newWorld() *world {
	return &world{
		calls: map[string]int{}, effects: map[string]int{}, keys: map[string][]string{},
		hooks:  map[string]func(context.Context, *saga.Execution) error{},
		after:  map[string]func(context.Context, *saga.Execution) error{},
		active: map[uuid.UUID]int{}, sagaData: map[uuid.UUID][]byte{}, orders: map[uuid.UUID][]string{},
	}
}

func label(x *saga.Execution) string {
	if x.Phase == saga.PhaseCompensation {
		return "-" + x.Step
	}
	return x.Step
}

// on sets the hook run before the effect of step (name, "-name" for its
// compensation). A hook error fails the call without effect.
func (w *world) on(step string, f func(ctx context.Context, x *saga.Execution) error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hooks[step] = f
}

// onAfter sets the hook run after the effect; its error is returned to the
// engine although the effect happened (a lost response).
func (w *world) onAfter(step string, f func(ctx context.Context, x *saga.Execution) error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.after[step] = f
}

func (w *world) call(ctx context.Context, x *saga.Execution) error {
	k, l := x.IdempotencyKey(), label(x)
	w.mu.Lock()
	w.calls[k]++
	w.keys[l] = append(w.keys[l], k)
	w.sagaData[x.SagaID] = x.Data
	w.active[x.SagaID]++
	if n := int32(w.active[x.SagaID]); n > w.maxConc.Load() {
		w.maxConc.Store(n)
	}
	hook, after := w.hooks[l], w.after[l]
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.active[x.SagaID]--
		w.mu.Unlock()
	}()
	if hook != nil {
		if err := hook(ctx, x); err != nil {
			return err
		}
	}
	w.mu.Lock()
	if w.effects[k] == 0 {
		w.orders[x.SagaID] = append(w.orders[x.SagaID], l)
	}
	w.effects[k] = 1
	w.mu.Unlock()
	if after != nil {
		return after(ctx, x)
	}
	return nil
}

func (w *world) step(name string) saga.Step {
	return saga.Step{Name: name, Action: w.call, Compensate: w.call}
}

// orderOf returns the effects of saga id in the order they happened:
// "b" for b's action, "-b" for its compensation.
func (w *world) orderOf(id uuid.UUID) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.orders[id]...)
}

func (w *world) callsOf(key string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.calls[key]
}

// key is the idempotency key of step in phase for saga id.
func key(id uuid.UUID, step string, compensate bool) string {
	x := saga.Execution{SagaID: id, Step: step, Phase: saga.PhaseAction}
	if compensate {
		x.Phase = saga.PhaseCompensation
	}
	return x.IdempotencyKey()
}

// transient is a retryable error.
var errTransient = errors.New("unavailable")

// failTimes fails the first n calls of a hook with err.
func failTimes(n int, err error) func(context.Context, *saga.Execution) error {
	var calls atomic.Int32
	return func(context.Context, *saga.Execution) error {
		if calls.Add(1) <= int32(n) {
			return err
		}
		return nil
	}
}

// killableDB is the engine's database connection that the test can cut, as
// a crashed process or a network partition would: every call fails while
// it is dead. The engine and the database behind it are real.
type killableDB struct {
	pool *pgxpool.Pool
	dead atomic.Bool
}

var errConnLost = errors.New("test: connection to the database lost")

func (k *killableDB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if k.dead.Load() {
		return pgconn.CommandTag{}, errConnLost
	}
	return k.pool.Exec(ctx, sql, args...)
}

func (k *killableDB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if k.dead.Load() {
		return nil, errConnLost
	}
	return k.pool.Query(ctx, sql, args...)
}

func (k *killableDB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if k.dead.Load() {
		return errRow{}
	}
	return k.pool.QueryRow(ctx, sql, args...)
}

type errRow struct{}

func (errRow) Scan(...any) error { return errConnLost }

// def3 is a three-step sequential saga a → b → c of w.
func def3(w *world) *saga.Definition {
	return &saga.Definition{Name: "three", Steps: saga.Sequence(w.step("a"), w.step("b"), w.step("c"))}
}

func start(t testing.TB, e *engine, typ, correlation string) uuid.UUID {
	t.Helper()
	r, err := e.Start(context.Background(), saga.StartRequest{Type: typ, CorrelationID: correlation, StartedBy: "alice", Data: []byte("ctx-" + correlation)})
	require.NoError(t, err)
	require.True(t, r.Created)
	return r.SagaID
}

// runThree runs an engine with def3(w) on a fresh database and starts the
// saga of correlation on it.
func runThree(t testing.TB, w *world, correlation string) (*engine, uuid.UUID) {
	t.Helper()
	e := startEngine(t, newDB(t), fastOptions("r1"), def3(w))
	return e, start(t, e, "three", correlation)
}

// startCommitted starts a saga on e in a transaction of the caller's on
// pool, and commits it.
func startCommitted(t testing.TB, e *engine, pool *pgxpool.Pool, req saga.StartRequest) saga.StartResult {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	r, err := e.StartTx(ctx, tx, req)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	return r
}

func stepOf(s saga.Saga, name string, phase saga.Phase) saga.StepRecord {
	for _, st := range s.Steps {
		if st.Name == name && st.Phase == phase {
			return st
		}
	}
	return saga.StepRecord{}
}

func auditActions(t testing.TB, e *engine, id uuid.UUID) []string {
	t.Helper()
	recs, err := e.Audit(context.Background(), id)
	require.NoError(t, err)
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.Action
	}
	return out
}

// testLogger discards logs unless SAGA_TEST_LOG is set.
func testLogger(testing.TB) *slog.Logger {
	if os.Getenv("SAGA_TEST_LOG") != "" {
		return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}
