package saga_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/saga"
)

// twoReplicas starts the engines of replicas r1, on db1, and r2, on db2,
// both running def3(w) with leases of ttl.
func twoReplicas(t *testing.T, w *world, db1, db2 saga.DB, ttl time.Duration) (r1, r2 *engine) {
	t.Helper()
	opts1, opts2 := fastOptions("r1"), fastOptions("r2")
	opts1.LeaseTTL, opts2.LeaseTTL = ttl, ttl
	return startEngine(t, db1, opts1, def3(w)), startEngine(t, db2, opts2, def3(w))
}

// crashOnFirstAttempt is a hook that kills db's connection at a call's
// first attempt, failing it as the lost connection would; later attempts
// go through.
func crashOnFirstAttempt(db *killableDB) func(context.Context, *saga.Execution) error {
	return func(_ context.Context, x *saga.Execution) error {
		if x.Attempt == 1 {
			db.dead.Store(true)
			return errConnLost
		}
		return nil
	}
}

// TestCrashBetweenBeforeAndAfterResumesOnAnotherEngine kills the first
// engine's database connection in the middle of each step (before and after
// the neighbour applied the effect), as a crash or a partition would. A
// second engine (another replica, or the restarted process) takes the saga
// over when the lease expires: the interrupted step is called again with the
// same idempotency key, so its effect happens once; no earlier step runs
// again and no later one is skipped.
func TestCrashBetweenBeforeAndAfterResumesOnAnotherEngine(t *testing.T) {
	t.Parallel()
	for _, step := range []string{"a", "b", "c"} {
		for _, point := range []string{"before effect", "after effect"} {
			t.Run(step+" "+point, func(t *testing.T) {
				t.Parallel()
				pool := newDB(t)
				w := newWorld()
				crashed := &killableDB{pool: pool}
				if point == "before effect" {
					w.on(step, crashOnFirstAttempt(crashed))
				} else {
					w.onAfter(step, crashOnFirstAttempt(crashed))
				}
				e1, e2 := twoReplicas(t, w, crashed, pool, 300*time.Millisecond)
				id := start(t, e1, "three", "o")

				s := waitState(t, e2, id, saga.StateCompleted)
				require.Equal(t, []string{"a", "b", "c"}, w.orderOf(id), "every effect once, in order")
				for _, other := range []string{"a", "b", "c"} {
					want := 1
					if other == step {
						want = 2 // the interrupted call and its resumption
					}
					require.Equal(t, want, w.callsOf(key(id, other, false)), other)
				}
				require.Equal(t, 2, stepOf(s, step, saga.PhaseAction).Attempts)
				recs, err := e2.Audit(context.Background(), id)
				require.NoError(t, err)
				var claimed bool
				for _, r := range recs {
					if r.Action == "saga.claimed" && r.Actor == "r2" {
						claimed = true
						require.JSONEq(t, `{"previous_owner":"r1"}`, string(r.Detail))
					}
				}
				require.True(t, claimed, "r2 took over from r1")
			})
		}
	}
}

// TestCrashDuringCompensationResumes kills the engine while it undoes a
// step: the compensation is called again with the same key and undone once.
func TestCrashDuringCompensationResumes(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	w := newWorld()
	crashed := &killableDB{pool: pool}
	w.on("c", func(context.Context, *saga.Execution) error { return saga.Permanent(fmt.Errorf("declined")) })
	w.onAfter("-b", crashOnFirstAttempt(crashed))
	e1, e2 := twoReplicas(t, w, crashed, pool, 300*time.Millisecond)
	id := start(t, e1, "three", "o")

	waitState(t, e2, id, saga.StateCompensated)
	require.Equal(t, []string{"a", "b", "-b", "-a"}, w.orderOf(id))
	require.Equal(t, 2, w.callsOf(key(id, "b", true)))
	require.Equal(t, 1, w.callsOf(key(id, "a", true)))
}

// TestReplicasExecuteEachSagaOnceAtATime runs two engines on one database:
// sagas started on either, plus sagas whose starter never executes them
// (left to the recovery loops of both to race for). No saga ever has two
// calls in flight, and every call happens once.
func TestReplicasExecuteEachSagaOnceAtATime(t *testing.T) {
	t.Parallel()
	url, pool := pgtest.NewDatabase(t, migrations)
	pool2, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool2.Close)
	w := newWorld()
	jittery := func(context.Context, *saga.Execution) error {
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
		return nil
	}
	for _, s := range []string{"a", "b", "c"} {
		w.on(s, jittery)
	}
	e1, e2 := twoReplicas(t, w, pool, pool2, 1500*time.Millisecond)

	var (
		mu  sync.Mutex
		ids []uuid.UUID
		wg  sync.WaitGroup
	)
	for i := range 40 {
		wg.Go(func() {
			e := e1
			if i%2 == 1 {
				e = e2
			}
			id := start(t, e, "three", fmt.Sprintf("started-%d", i))
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		})
	}
	for i := range 20 {
		wg.Go(func() {
			tx, err := pool.Begin(context.Background())
			require.NoError(t, err)
			r, err := e1.StartTx(context.Background(), tx, saga.StartRequest{Type: "three", CorrelationID: fmt.Sprintf("orphan-%d", i), StartedBy: "alice"})
			require.NoError(t, err)
			require.NoError(t, tx.Commit(context.Background()))
			mu.Lock()
			ids = append(ids, r.SagaID)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, id := range ids {
		waitState(t, e1, id, saga.StateCompleted)
	}
	require.EqualValues(t, 1, w.maxConc.Load(), "never two executions of one saga at once")
	for _, id := range ids {
		for _, s := range []string{"a", "b", "c"} {
			require.Equal(t, 1, w.callsOf(key(id, s, false)), "saga %s step %s", id, s)
		}
	}
	claims := counter(t, e1.reg, "saga_claims_total") + counter(t, e2.reg, "saga_claims_total")
	require.GreaterOrEqual(t, claims, 20.0, "the orphans were claimed by the recovery loops")
}

// TestLeaseTakeoverFencesTheFormerOwner partitions a replica in the middle
// of a step: another replica takes the saga over and finishes it; when the
// first one comes back, its write matches nothing (version and owner
// changed), so it stops without touching the saga.
func TestLeaseTakeoverFencesTheFormerOwner(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	w := newWorld()
	partitioned := &killableDB{pool: pool}
	inB, releaseB := make(chan struct{}), make(chan struct{})
	w.on("b", func(ctx context.Context, x *saga.Execution) error {
		if x.Attempt == 1 {
			close(inB)
			select {
			case <-releaseB:
			case <-ctx.Done():
			}
		}
		return nil
	})
	e1, e2 := twoReplicas(t, w, partitioned, pool, 300*time.Millisecond)
	id := start(t, e1, "three", "o")
	<-inB
	partitioned.dead.Store(true)

	waitState(t, e2, id, saga.StateCompleted)
	var version int64
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT version FROM sagas WHERE id = $1", id).Scan(&version))

	partitioned.dead.Store(false)
	close(releaseB)
	require.Eventually(t, func() bool { return counter(t, e1.reg, "saga_lease_lost_total") == 1 }, 5*time.Second, 5*time.Millisecond)
	var after int64
	var state string
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT version, state FROM sagas WHERE id = $1", id).Scan(&after, &state))
	require.Equal(t, version, after, "the fenced replica wrote nothing")
	require.Equal(t, "COMPLETED", state)
	require.Equal(t, []string{"a", "b", "c"}, w.orderOf(id))
	require.Equal(t, 2, w.callsOf(key(id, "b", false)))
}

func TestStopReleasesLeasesForAnotherReplica(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	w := newWorld()
	inB := make(chan struct{})
	var once sync.Once
	w.on("b", func(ctx context.Context, x *saga.Execution) error {
		if x.Attempt == 1 {
			once.Do(func() { close(inB) })
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	e1, e2 := twoReplicas(t, w, pool, pool, time.Minute) // only a release lets r2 in quickly
	id := start(t, e1, "three", "o")
	<-inB
	e1.stop()
	waitState(t, e2, id, saga.StateCompleted)
	require.Equal(t, []string{"a", "b", "c"}, w.orderOf(id))
}

func TestStartTxRollsBackWithTheCaller(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	e := startEngine(t, pool, fastOptions("r1"), def3(newWorld()))
	ctx := context.Background()

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	r, err := e.StartTx(ctx, tx, saga.StartRequest{Type: "three", CorrelationID: "rolled-back", StartedBy: "alice"})
	require.NoError(t, err)
	require.True(t, r.Created)
	require.NoError(t, tx.Rollback(ctx))
	_, err = e.Get(ctx, r.SagaID)
	require.ErrorIs(t, err, saga.ErrNotFound, "nothing outlives the caller's rollback")
}

// TestTheStarterExecutesWhatStartTxStored commits a saga with StartTx and
// has its starter execute it, by id (Execute) or from what StartTx
// returned (ExecuteStarted): it runs once, by its starter, and executing
// it again once it is finished runs nothing.
func TestTheStarterExecutesWhatStartTxStored(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		execute func(context.Context, *engine, saga.StartResult) error
	}{
		{"Execute", func(ctx context.Context, e *engine, r saga.StartResult) error { return e.Execute(ctx, r.SagaID) }},
		{"ExecuteStarted", func(ctx context.Context, e *engine, r saga.StartResult) error { return e.ExecuteStarted(ctx, r) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := newDB(t)
			w := newWorld()
			e := startEngine(t, pool, fastOptions("r1"), def3(w))
			ctx := context.Background()

			r := startCommitted(t, e, pool, saga.StartRequest{Type: "three", CorrelationID: "o", StartedBy: "alice", Data: []byte("d")})
			require.NoError(t, tc.execute(ctx, e, r))
			s := waitState(t, e, r.SagaID, saga.StateCompleted)
			require.Equal(t, "alice", s.StartedBy)
			require.Equal(t, []byte("d"), w.sagaData[r.SagaID])
			require.Zero(t, counter(t, e.reg, "saga_claims_total"), "executed by its starter, not recovered")

			again := startCommitted(t, e, pool, saga.StartRequest{Type: "three", CorrelationID: "o", StartedBy: "alice"})
			require.False(t, again.Created)
			require.Equal(t, r.SagaID, again.SagaID)
			require.NoError(t, tc.execute(ctx, e, again), "executing a finished saga is a no-op")
			require.Equal(t, 1, w.callsOf(key(r.SagaID, "a", false)))
		})
	}
}

func TestContextIsEncryptedAtRest(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	w := newWorld()
	e := startEngine(t, pool, fastOptions("r1"), def3(w))
	secret := []byte(`{"payment_method":"tok_visa_4242_SECRET"}`)
	r, err := e.Start(context.Background(), saga.StartRequest{Type: "three", CorrelationID: "o", StartedBy: "alice", Data: secret})
	require.NoError(t, err)
	waitState(t, e, r.SagaID, saga.StateCompleted)

	var sealed []byte
	var keyID string
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT context, key_id FROM sagas WHERE id = $1", r.SagaID).Scan(&sealed, &keyID))
	require.Equal(t, "k1", keyID)
	require.False(t, bytes.Contains(sealed, []byte("tok_visa")), "no plaintext in the database")
	got, err := newKeys(t).Open(keyID, sealed, r.SagaID[:])
	require.NoError(t, err)
	require.Equal(t, secret, got)
	other := uuid.New()
	_, err = newKeys(t).Open(keyID, sealed, other[:])
	require.ErrorIs(t, err, keyring.ErrDecrypt, "bound to its saga id")
	require.Equal(t, secret, w.sagaData[r.SagaID])
}

func TestOldContextKeysStayReadable(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	w := newWorld()
	before := startEngine(t, pool, fastOptions("r1"), def3(w)) // seals with k1
	tx, err := pool.Begin(context.Background())
	require.NoError(t, err)
	r, err := before.StartTx(context.Background(), tx, saga.StartRequest{Type: "three", CorrelationID: "o", StartedBy: "alice", Data: []byte("sealed-with-k1")})
	require.NoError(t, err)
	require.NoError(t, tx.Commit(context.Background()))
	before.stop()

	rotated, err := keyring.New("k2", map[string][]byte{"k1": testKey, "k2": bytes.Repeat([]byte{9}, keyring.KeySize)})
	require.NoError(t, err)
	after := startEngineWithKeys(t, pool, rotated, fastOptions("r2"), def3(w))
	require.NoError(t, after.Execute(context.Background(), r.SagaID))
	waitState(t, after, r.SagaID, saga.StateCompleted)
	require.Equal(t, []byte("sealed-with-k1"), w.sagaData[r.SagaID])
}

func TestStepSpansContinueTheStartersTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	w := newWorld()
	w.on("b", failTimes(1, errTransient))
	opts := fastOptions("r1")
	opts.TracerProvider = tp
	e := startEngine(t, newDB(t), opts, def3(w))

	ctx, parent := tp.Tracer("test").Start(context.Background(), "consume order.created.v1")
	r, err := e.Start(ctx, saga.StartRequest{Type: "three", CorrelationID: "o", StartedBy: "alice"})
	require.NoError(t, err)
	parent.End()
	waitState(t, e, r.SagaID, saga.StateCompleted)

	var names []string
	for _, s := range rec.Ended() {
		if s.Name() == "consume order.created.v1" {
			continue
		}
		names = append(names, s.Name())
		require.Equal(t, parent.SpanContext().TraceID(), s.SpanContext().TraceID(), "one trace from the event to the steps")
		require.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID())
		attrs := map[string]string{}
		for _, a := range s.Attributes() {
			attrs[string(a.Key)] = a.Value.String()
		}
		require.Equal(t, r.SagaID.String(), attrs["saga.id"])
		require.Equal(t, s.Name(), "saga.step."+attrs["saga.step"])
		require.NotEmpty(t, attrs["saga.attempt"])
	}
	require.Equal(t, []string{"saga.step.a", "saga.step.b", "saga.step.b", "saga.step.c"}, names, "one span per attempt")
}

// startEngineWithKeys is startEngine with another keyring.
func startEngineWithKeys(t *testing.T, db saga.DB, keys *keyring.Keyring, opts saga.Options, defs ...*saga.Definition) *engine {
	t.Helper()
	return startEngineK(t, db, keys, opts, defs...)
}

// TestResealContextsUnderLoad rotates the context key while an engine that
// holds both keys (writing with the new one) recovers and runs sagas
// sealed under the old one and starts new ones: every saga completes with
// its context intact, and afterwards every context opens without the old
// key.
func TestResealContextsUnderLoad(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	ctx := context.Background()
	w := newWorld()
	before := startEngine(t, pool, fastOptions("r1"), def3(w)) // seals with k1
	const n = 150
	ids := make([]uuid.UUID, 0, 2*n)
	for i := range n {
		r := startCommitted(t, before, pool, saga.StartRequest{Type: "three", CorrelationID: fmt.Sprintf("old-%d", i), StartedBy: "alice", Data: fmt.Appendf(nil, "ctx-%d", i)})
		ids = append(ids, r.SagaID) // not executed: the next engine recovers them
	}
	before.stop()

	k2 := bytes.Repeat([]byte{9}, keyring.KeySize)
	rotated, err := keyring.New("k2", map[string][]byte{"k1": testKey, "k2": k2})
	require.NoError(t, err)
	after := startEngineWithKeys(t, pool, rotated, fastOptions("r2"), def3(w))
	started := make(chan uuid.UUID, n)
	go func() {
		defer close(started)
		for i := range n {
			r, err := after.Start(ctx, saga.StartRequest{Type: "three", CorrelationID: fmt.Sprintf("new-%d", i), StartedBy: "alice", Data: fmt.Appendf(nil, "ctx-new-%d", i)})
			if err != nil {
				t.Errorf("start: %v", err)
				return
			}
			started <- r.SagaID
		}
	}()
	stats, err := saga.ResealContexts(ctx, pool, rotated)
	require.NoError(t, err)
	require.Zero(t, stats.Failed)
	for id := range started {
		ids = append(ids, id)
	}
	for _, id := range ids {
		waitState(t, after, id, saga.StateCompleted)
	}
	for i, id := range ids[:n] {
		w.mu.Lock()
		data := w.sagaData[id]
		w.mu.Unlock()
		require.Equal(t, fmt.Sprintf("ctx-%d", i), string(data), "the recovered saga saw its context")
	}
	// Sagas that were still unclaimed or claimed by the engine may have
	// been resealed by this run or not yet seen; a second run finishes.
	_, err = saga.ResealContexts(ctx, pool, rotated)
	require.NoError(t, err)

	retired, err := keyring.New("k2", map[string][]byte{"k2": k2})
	require.NoError(t, err)
	rows, err := pool.Query(ctx, "SELECT id, key_id, context FROM sagas")
	require.NoError(t, err)
	sagas, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		ID     uuid.UUID
		KeyID  string
		Sealed []byte
	}])
	require.NoError(t, err)
	require.Len(t, sagas, 2*n)
	for _, s := range sagas {
		require.Equal(t, "k2", s.KeyID)
		_, err := retired.Open(s.KeyID, s.Sealed, s.ID[:])
		require.NoError(t, err, "the old key can go")
	}
}

// A saga whose lease ran out before its starter executed it, and which
// another replica then ran, is not run again from the starter's stale copy.
func TestExecuteStartedStopsWhenTheSagaMovedOn(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	w := newWorld()
	e1 := startEngine(t, pool, fastOptions("r1"), def3(w))
	ctx := context.Background()
	r := startCommitted(t, e1, pool, saga.StartRequest{Type: "three", CorrelationID: "o", StartedBy: "alice"})

	// The insert's lease runs out while ExecuteStarted is not called (it
	// waits for a worker, say). Waited out for real, not set back in the
	// table: the execution must tell from its own clock that the first
	// call the insert recorded may no longer be made.
	require.Eventually(t, func() bool {
		var expired bool
		require.NoError(t, pool.QueryRow(ctx, "SELECT lease_until < now() FROM sagas WHERE id = $1", r.SagaID).Scan(&expired))
		return expired
	}, 10*time.Second, 10*time.Millisecond)
	e2 := startEngine(t, pool, fastOptions("r2"), def3(w))
	waitState(t, e2, r.SagaID, saga.StateCompleted)

	require.NoError(t, e1.ExecuteStarted(ctx, r))
	require.Eventually(t, func() bool { return counter(t, e1.reg, "saga_lease_lost_total") == 1 }, 10*time.Second, 10*time.Millisecond,
		"the stale copy's first write matches nothing")
	require.Equal(t, 1, w.callsOf(key(r.SagaID, "a", false)), "step a ran once, by r2")
}

// A saga from StartTx has its first call recorded by its insert (after
// any leading steps without an action, passed as no-ops, as the checkout's
// order step is), and the execution after the commit makes that call
// without a write of its own: one transition per later call and one for the
// end, and the attempt called is the one the insert stored, not a second.
func TestExecuteStartedCallsTheStepItsInsertRecorded(t *testing.T) {
	t.Parallel()
	w := newWorld()
	noop := saga.Step{Name: "order", Compensate: w.call}
	for _, tc := range []struct {
		def          *saga.Definition
		first        string
		insertAudit  []string
		later, audit []string
	}{{
		def:         def3(w),
		first:       "a",
		insertAudit: []string{"saga.started", "step.started"},
		later:       []string{"b", "c"},
		audit: []string{"saga.started", "step.started", "step.succeeded", "step.started", "step.succeeded",
			"step.started", "step.succeeded", "saga.completed"},
	}, {
		def:         &saga.Definition{Name: "noop-first", Steps: saga.Sequence(noop, w.step("x"), w.step("y"))},
		first:       "x",
		insertAudit: []string{"saga.started", "step.succeeded", "step.started"},
		later:       []string{"y"},
		audit: []string{"saga.started", "step.succeeded", "step.started", "step.succeeded", "step.started",
			"step.succeeded", "saga.completed"},
	}} {
		t.Run(tc.def.Name, func(t *testing.T) {
			t.Parallel()
			pool := newDB(t)
			e := startEngine(t, pool, fastOptions("r1"), tc.def)
			ctx := context.Background()
			r := startCommitted(t, e, pool, saga.StartRequest{Type: tc.def.Name, CorrelationID: "o", StartedBy: "alice"})

			stored, err := e.Get(ctx, r.SagaID)
			require.NoError(t, err)
			first := stepOf(stored, tc.first, saga.PhaseAction)
			require.Equal(t, saga.StepRunning, first.Status, "the insert records the first call as started")
			require.Equal(t, 1, first.Attempts)
			require.Equal(t, tc.insertAudit, auditActions(t, e, r.SagaID))
			require.Zero(t, w.callsOf(key(r.SagaID, tc.first, false)), "nothing is called before ExecuteStarted")
			version := func() (v int64) {
				require.NoError(t, pool.QueryRow(ctx, "SELECT version FROM sagas WHERE id = $1", r.SagaID).Scan(&v))
				return v
			}
			inserted := version()

			require.NoError(t, e.ExecuteStarted(ctx, r))
			done := waitState(t, e, r.SagaID, saga.StateCompleted)
			require.Equal(t, 1, stepOf(done, tc.first, saga.PhaseAction).Attempts, "the recorded attempt is the one called")
			require.Equal(t, 1, w.callsOf(key(r.SagaID, tc.first, false)))
			require.Equal(t, inserted+int64(len(tc.later))+1, version(), "no write before the first call")
			require.Equal(t, tc.audit, auditActions(t, e, r.SagaID))
		})
	}
}
