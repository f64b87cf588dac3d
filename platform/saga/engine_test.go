package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/saga"
)

func TestHappyPathRunsEveryStepOnceInOrder(t *testing.T) {
	t.Parallel()
	w := newWorld()
	e, id := runThree(t, w, "order-1")

	s := waitState(t, e, id, saga.StateCompleted)
	require.Equal(t, []string{"a", "b", "c"}, w.orderOf(id))
	for _, step := range []string{"a", "b", "c"} {
		require.Equal(t, 1, w.callsOf(key(id, step, false)), step)
		st := stepOf(s, step, saga.PhaseAction)
		require.Equal(t, saga.StepSucceeded, st.Status, step)
		require.Equal(t, 1, st.Attempts, step)
		require.NotNil(t, st.EndedAt)
	}
	require.Len(t, s.Steps, 3, "no compensation rows")
	require.Equal(t, "alice", s.StartedBy)
	require.Equal(t, "order-1", s.CorrelationID)
	require.NotNil(t, s.EndedAt)
	requireCounter(t, e.reg, 1, "saga_executions_total", "saga_type", "three", "outcome", "completed")
	requireCounter(t, e.reg, 1, "saga_duration_seconds", "outcome", "completed")
	require.Equal(t, []byte("ctx-order-1"), w.sagaData[id], "steps see the decrypted context")
}

func TestStartIsIdempotentPerCorrelationID(t *testing.T) {
	t.Parallel()
	w := newWorld()
	e := startEngine(t, newDB(t), fastOptions("r1"), def3(w))

	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[uuid.UUID]int{}
		created int
	)
	for range 10 {
		wg.Go(func() {
			r, err := e.Start(context.Background(), saga.StartRequest{Type: "three", CorrelationID: "same", StartedBy: "alice"})
			require.NoError(t, err)
			mu.Lock()
			defer mu.Unlock()
			ids[r.SagaID]++
			if r.Created {
				created++
			}
		})
	}
	wg.Wait()
	require.Len(t, ids, 1, "one saga per correlation id")
	require.Equal(t, 1, created)
	for id := range ids {
		waitState(t, e, id, saga.StateCompleted)
		require.Equal(t, 1, w.callsOf(key(id, "a", false)))
	}
}

func TestPermanentFailureCompensatesAtOnceInReverse(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.on("c", func(context.Context, *saga.Execution) error { return saga.Permanent(errors.New("payment declined")) })
	e, id := runThree(t, w, "o")

	s := waitState(t, e, id, saga.StateCompensated)
	require.Equal(t, []string{"a", "b", "-b", "-a"}, w.orderOf(id), "completed steps undone in reverse; the failed one is not")
	require.Equal(t, 1, w.callsOf(key(id, "c", false)), "a business failure is not retried")
	require.Zero(t, w.callsOf(key(id, "c", true)), "a permanently failed step took no effect: nothing to undo")
	require.Equal(t, "c: payment declined", s.FailureReason)
	c := stepOf(s, "c", saga.PhaseAction)
	require.Equal(t, saga.StepFailed, c.Status)
	require.True(t, c.Permanent)
	require.Equal(t, "payment declined", c.LastError)
	require.Equal(t, saga.StepSucceeded, stepOf(s, "b", saga.PhaseCompensation).Status)
	requireCounter(t, e.reg, 1, "saga_executions_total", "outcome", "compensated")
	require.Equal(t, 1.0, counter(t, e.reg, "saga_compensations_total", "step", "a"))
	require.Equal(t, 1.0, counter(t, e.reg, "saga_compensations_total", "step", "b"))
}

// Transient errors are retried with the same key, up to the default
// budget of 3 calls.
func TestTransientErrorsAreRetriedWithTheSameKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		failures int // b's first calls that fail
		state    saga.State
		order    []string
		bUndone  int // calls of b's compensation
		cCalls   int
		bStatus  saga.StepStatus
		failure  string // in the saga's failure reason; none when empty
	}{
		{"a step that succeeds on its third call completes the saga", 2,
			saga.StateCompleted, []string{"a", "b", "c"}, 0, 1, saga.StepSucceeded, ""},
		// b fails for its whole budget (3 calls), before any effect; the
		// engine cannot know that, so b is compensated (safe for a step
		// that did nothing), and b's action is not called a fourth time.
		{"exhausted retries compensate the step without calling it again", 3,
			saga.StateCompensated, []string{"a", "-b", "-a"}, 1, 0, saga.StepFailed, "b: unavailable (after 3 attempts)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld()
			w.on("b", failTimes(tc.failures, errTransient))
			e, id := runThree(t, w, "o")

			s := waitState(t, e, id, tc.state)
			require.Equal(t, tc.order, w.orderOf(id))
			require.Equal(t, 3, w.callsOf(key(id, "b", false)), "every attempt used the same key")
			require.Equal(t, tc.bUndone, w.callsOf(key(id, "b", true)))
			require.Equal(t, tc.cCalls, w.callsOf(key(id, "c", false)), "no step after a failure runs")
			if tc.failure == "" {
				require.Empty(t, s.FailureReason)
			} else {
				require.Contains(t, s.FailureReason, tc.failure)
			}
			b := stepOf(s, "b", saga.PhaseAction)
			require.Equal(t, tc.bStatus, b.Status)
			require.False(t, b.Permanent)
			require.Equal(t, 3, b.Attempts)
			require.Equal(t, 2.0, counter(t, e.reg, "saga_step_retries_total", "step", "b"))
			require.Contains(t, auditActions(t, e, id), "step.attempt_failed")
		})
	}
}

func TestParallelGroupRunsConcurrently(t *testing.T) {
	t.Parallel()
	w := newWorld()
	cStarted := make(chan struct{})
	w.on("b", func(ctx context.Context, _ *saga.Execution) error {
		select { // b finishes only once c has started: they overlap
		case <-cStarted:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	w.on("c", func(context.Context, *saga.Execution) error { close(cStarted); return nil })
	def := &saga.Definition{Name: "par", Steps: []saga.Group{{w.step("a")}, {w.step("b"), w.step("c")}, {w.step("d")}}}
	e := startEngine(t, newDB(t), fastOptions("r1"), def)
	id := start(t, e, "par", "o")

	waitState(t, e, id, saga.StateCompleted)
	order := w.orderOf(id)
	require.Equal(t, "a", order[0])
	require.ElementsMatch(t, []string{"b", "c"}, order[1:3])
	require.Equal(t, "d", order[3])
}

func TestParallelGroupFailureCancelsSiblingAndCompensatesIt(t *testing.T) {
	t.Parallel()
	w := newWorld()
	cBlocked := make(chan struct{})
	var once sync.Once
	w.on("c", func(ctx context.Context, x *saga.Execution) error {
		if x.Attempt == 1 { // hangs until b's failure cancels it
			once.Do(func() { close(cBlocked) })
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	w.on("b", func(ctx context.Context, _ *saga.Execution) error {
		<-cBlocked
		return saga.Permanent(errors.New("insufficient stock"))
	})
	def := &saga.Definition{Name: "par", Steps: []saga.Group{{w.step("a")}, {w.step("b"), w.step("c")}, {w.step("d")}}}
	e := startEngine(t, newDB(t), fastOptions("r1"), def)
	id := start(t, e, "par", "o")

	s := waitState(t, e, id, saga.StateCompensated)
	// c was cut off mid-call: its outcome is unknown, so it is compensated
	// without being called again; b refused, so it is not.
	require.Equal(t, []string{"a", "-c", "-a"}, w.orderOf(id))
	require.Equal(t, 1, w.callsOf(key(id, "c", false)))
	require.Zero(t, w.callsOf(key(id, "b", true)))
	require.Zero(t, w.callsOf(key(id, "d", false)))
	require.Equal(t, "b: insufficient stock", s.FailureReason)
	c := stepOf(s, "c", saga.PhaseAction)
	require.Equal(t, saga.StepFailed, c.Status, "the interrupted call's row does not stay RUNNING")
	require.Contains(t, c.LastError, "outcome unknown")
}

func TestCompensationFailureParksThenRetryCompensates(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.on("c", func(context.Context, *saga.Execution) error { return saga.Permanent(errors.New("declined")) })
	var refundWorks sync.Mutex // held: compensation of b fails
	refundWorks.Lock()
	w.on("-b", func(context.Context, *saga.Execution) error {
		if refundWorks.TryLock() {
			refundWorks.Unlock()
			return nil
		}
		return errors.New("payment service unavailable")
	})
	opts := fastOptions("r1")
	opts.CompensationLimit = 300 * time.Millisecond
	e := startEngine(t, newDB(t), opts, def3(w))
	id := start(t, e, "three", "o")

	s := waitState(t, e, id, saga.StateParked)
	require.Equal(t, []string{"a", "b"}, w.orderOf(id), "a is not undone before b")
	require.Greater(t, w.callsOf(key(id, "b", true)), 2, "compensation was retried")
	require.Equal(t, "c: declined", s.FailureReason, "the reason stays what compensations were given")
	recs, err := e.Audit(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, "saga.parked", recs[len(recs)-1].Action)
	require.Contains(t, string(recs[len(recs)-1].Detail), "could not compensate b within 300ms: payment service unavailable")
	require.Equal(t, saga.StepFailed, stepOf(s, "b", saga.PhaseCompensation).Status)
	require.Equal(t, "payment service unavailable", stepOf(s, "b", saga.PhaseCompensation).LastError)
	requireCounter(t, e.reg, 1, "saga_executions_total", "outcome", "parked")
	requireCounter(t, e.reg, 1, "saga_parked_count")

	// Parked is stable: nothing runs it until an operator does.
	calls := w.callsOf(key(id, "b", true))
	_, err = e.Abort(context.Background(), id, "ops", "")
	require.ErrorIs(t, err, saga.ErrIllegalState, "a parked saga cannot be aborted")

	refundWorks.Unlock()
	got, err := e.Retry(context.Background(), id, "ops-alice")
	require.NoError(t, err)
	require.Contains(t, []saga.State{saga.StateCompensating, saga.StateCompensated}, got.State)
	s = waitState(t, e, id, saga.StateCompensated)
	require.Equal(t, []string{"a", "b", "-b", "-a"}, w.orderOf(id))
	require.Greater(t, w.callsOf(key(id, "b", true)), calls)
	requireCounter(t, e.reg, 0, "saga_parked_count")

	_, err = e.Retry(context.Background(), id, "ops")
	require.ErrorIs(t, err, saga.ErrIllegalState, "only PARKED sagas are retried")
	_, err = e.Retry(context.Background(), uuid.New(), "ops")
	require.ErrorIs(t, err, saga.ErrNotFound)

	recs, err = e.Audit(context.Background(), id)
	require.NoError(t, err)
	var retried bool
	for _, r := range recs {
		if r.Action == "saga.retried" {
			retried = true
			require.Equal(t, "ops-alice", r.Actor)
		}
	}
	require.True(t, retried)
}

func TestDeadlineCompensatesAndCountsTimeout(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.on("b", func(ctx context.Context, x *saga.Execution) error {
		if x.Attempt == 1 {
			<-ctx.Done() // hangs past the saga deadline
			return ctx.Err()
		}
		return nil
	})
	def := def3(w)
	def.Deadline = 300 * time.Millisecond
	e := startEngine(t, newDB(t), fastOptions("r1"), def)
	id := start(t, e, "three", "o")

	s := waitState(t, e, id, saga.StateCompensated)
	require.Equal(t, "saga deadline exceeded", s.FailureReason)
	require.Equal(t, []string{"a", "-b", "-a"}, w.orderOf(id), "b's unknown outcome is undone, b not called again")
	require.Equal(t, 1, w.callsOf(key(id, "b", false)))
	require.Zero(t, w.callsOf(key(id, "c", false)))
	require.Equal(t, 1.0, counter(t, e.reg, "saga_timeout_total", "saga_type", "three"))
	require.Equal(t, s.CreatedAt.Add(300*time.Millisecond), s.Deadline, "the deadline is the database's start time + 300ms")
}

func TestPivotIsRetriedPastItsBudgetAndNeverCompensated(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.on("confirm", failTimes(6, errTransient))
	confirm := saga.Step{Name: "confirm", Action: w.call, Pivot: true}
	def := &saga.Definition{Name: "pivot", Deadline: 200 * time.Millisecond,
		Steps: saga.Sequence(w.step("a"), confirm)}
	opts := fastOptions("r1")
	opts.CompensationRetry = backoff.Policy{Min: 20 * time.Millisecond, Max: 150 * time.Millisecond}
	opts.InlineRetryWait = 5 * time.Millisecond // so that the pivot's backoffs are persisted
	e := startEngine(t, newDB(t), opts, def)
	id := start(t, e, "pivot", "o")

	s := waitState(t, e, id, saga.StateCompleted)
	require.Equal(t, 7, w.callsOf(key(id, "confirm", false)))
	require.Equal(t, []string{"a", "confirm"}, w.orderOf(id))
	require.True(t, s.EndedAt.After(s.Deadline), "the pivot went on past the saga deadline")
	require.Zero(t, counter(t, e.reg, "saga_timeout_total", "saga_type", "pivot"))
	require.Contains(t, auditActions(t, e, id), "saga.suspended", "long backoffs are persisted, not slept")
}

func TestPivotPermanentFailureCompensates(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.on("confirm", func(context.Context, *saga.Execution) error {
		return saga.Permanent(errors.New("order already cancelled"))
	})
	def := &saga.Definition{Name: "pivot", Steps: saga.Sequence(w.step("a"), saga.Step{Name: "confirm", Action: w.call, Pivot: true})}
	e := startEngine(t, newDB(t), fastOptions("r1"), def)
	id := start(t, e, "pivot", "o")
	waitState(t, e, id, saga.StateCompensated)
	require.Equal(t, []string{"a", "-a"}, w.orderOf(id))
}

func TestNoopStepIsCompensated(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.on("pay", func(context.Context, *saga.Execution) error { return saga.Permanent(errors.New("declined")) })
	order := saga.Step{Name: "order", Compensate: w.call} // exists before the saga; its undo is to cancel it
	def := &saga.Definition{Name: "checkout", Steps: saga.Sequence(order, w.step("pay"), w.step("ship"))}
	e := startEngine(t, newDB(t), fastOptions("r1"), def)
	id := start(t, e, "checkout", "o")
	s := waitState(t, e, id, saga.StateCompensated)
	require.Equal(t, []string{"-order"}, w.orderOf(id))
	require.Equal(t, 0, stepOf(s, "order", saga.PhaseAction).Attempts)
	require.Equal(t, saga.StepSucceeded, stepOf(s, "order", saga.PhaseAction).Status)
	require.Equal(t, "pay: declined", s.FailureReason)
	require.Equal(t, saga.StepSucceeded, stepOf(s, "order", saga.PhaseCompensation).Status)
}

func TestAuthorizeRefusesDeniedUsers(t *testing.T) {
	t.Parallel()
	w := newWorld()
	opts := fastOptions("r1")
	opts.Authorize = func(_ context.Context, x *saga.Execution) error {
		if x.StartedBy == "mallory" {
			return errors.New("user is blocked")
		}
		return nil
	}
	pool := newDB(t)
	e := startEngine(t, pool, opts, def3(w))
	ctx := context.Background()
	req := saga.StartRequest{Type: "three", StartedBy: "mallory"}

	req.CorrelationID = "start"
	started, err := e.Start(ctx, req)
	require.NoError(t, err)
	// StartTx's insert records the first call as started only when it
	// may be made: here nothing is recorded, and the execution refuses.
	req.CorrelationID = "start-tx"
	startedTx := startCommitted(t, e, pool, req)
	require.NoError(t, e.ExecuteStarted(ctx, startedTx))

	for _, r := range []saga.StartResult{started, startedTx} {
		s := waitState(t, e, r.SagaID, saga.StateCompensated)
		require.Empty(t, w.orderOf(r.SagaID), "nothing was called on behalf of a denied user")
		require.Equal(t, "a: permission denied: user is blocked", s.FailureReason)
		require.Zero(t, stepOf(s, "a", saga.PhaseAction).Attempts)
		require.Contains(t, auditActions(t, e, r.SagaID), "step.denied")
	}
}

func TestAbortCompensatesARunningSaga(t *testing.T) {
	t.Parallel()
	w := newWorld()
	release := make(chan struct{})
	w.on("b", func(ctx context.Context, x *saga.Execution) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return ctx.Err()
	})
	e, id := runThree(t, w, "o")
	require.Eventually(t, func() bool { return w.callsOf(key(id, "b", false)) == 1 }, 5*time.Second, time.Millisecond)

	got, err := e.Abort(context.Background(), id, "ops-bob", "customer called")
	require.NoError(t, err)
	require.Contains(t, []saga.State{saga.StateCompensating, saga.StateCompensated}, got.State)
	s := waitState(t, e, id, saga.StateCompensated)
	close(release)
	require.Equal(t, "customer called", s.FailureReason)
	// b was in flight: its outcome is unknown, so it is compensated too,
	// without being called again.
	require.Equal(t, []string{"a", "-b", "-a"}, w.orderOf(id))
	require.Equal(t, 1, w.callsOf(key(id, "b", false)))
	require.Zero(t, w.callsOf(key(id, "c", false)))

	_, err = e.Abort(context.Background(), id, "ops", "again")
	require.ErrorIs(t, err, saga.ErrIllegalState)
	_, err = e.Abort(context.Background(), uuid.New(), "ops", "")
	require.ErrorIs(t, err, saga.ErrNotFound)
	acts := auditActions(t, e, id)
	require.Contains(t, acts, "saga.aborted")
}

func TestAbortAfterPivotIsRefused(t *testing.T) {
	t.Parallel()
	w := newWorld()
	release := make(chan struct{})
	w.on("confirm", func(context.Context, *saga.Execution) error { <-release; return nil })
	def := &saga.Definition{Name: "pivot", Steps: saga.Sequence(w.step("a"), saga.Step{Name: "confirm", Action: w.call, Pivot: true})}
	e := startEngine(t, newDB(t), fastOptions("r1"), def)
	id := start(t, e, "pivot", "o")
	require.Eventually(t, func() bool { return w.callsOf(key(id, "confirm", false)) == 1 }, 5*time.Second, time.Millisecond)
	_, err := e.Abort(context.Background(), id, "ops", "too late")
	require.ErrorIs(t, err, saga.ErrIllegalState)
	close(release)
	waitState(t, e, id, saga.StateCompleted)
}

func TestAuditRecordsEveryTransition(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.on("c", func(context.Context, *saga.Execution) error { return saga.Permanent(errors.New("no")) })
	e, id := runThree(t, w, "o")
	waitState(t, e, id, saga.StateCompensated)

	recs, err := e.Audit(context.Background(), id)
	require.NoError(t, err)
	var got []string
	for _, r := range recs {
		var d struct{ Step, Phase string }
		require.NoError(t, json.Unmarshal(r.Detail, &d))
		if d.Phase == string(saga.PhaseCompensation) {
			d.Step = "-" + d.Step
		}
		got = append(got, strings.TrimSpace(r.Action+" "+d.Step))
		require.False(t, r.At.IsZero())
	}
	require.Equal(t, []string{
		"saga.started",
		"step.started a", "step.succeeded a",
		"step.started b", "step.succeeded b",
		"step.started c", "step.failed c",
		"saga.compensating",
		"step.started -b", "step.succeeded -b",
		"step.started -a", "step.succeeded -a",
		"saga.compensated",
	}, got)
	require.Equal(t, "alice", recs[0].Actor, "the user who started it")
	require.Equal(t, "r1", recs[1].Actor, "the replica that ran the step")
}

func TestListPaginatesNewestFirstAndFilters(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.on("a", func(_ context.Context, x *saga.Execution) error {
		if strings.HasPrefix(x.CorrelationID, "bad") {
			return saga.Permanent(errors.New("no"))
		}
		return nil
	})
	e := startEngine(t, newDB(t), fastOptions("r1"), def3(w))
	var ids []uuid.UUID
	for _, c := range []string{"ok1", "bad1", "ok2", "bad2", "ok3"} {
		ids = append(ids, start(t, e, "three", c))
	}
	for i, id := range ids {
		want := saga.StateCompleted
		if i%2 == 1 {
			want = saga.StateCompensated
		}
		waitState(t, e, id, want)
	}
	var all []uuid.UUID
	var after *saga.ListCursor
	for {
		page, err := e.List(context.Background(), saga.ListFilter{Limit: 2, After: after})
		require.NoError(t, err)
		for _, s := range page {
			all = append(all, s.ID)
			want := 3 // a, b, c succeeded
			if s.State == saga.StateCompensated {
				want = 1 // a failed for good: nothing to undo
			}
			require.Len(t, s.Steps, want)
		}
		if len(page) < 2 {
			break
		}
		last := page[len(page)-1]
		after = &saga.ListCursor{CreatedAt: last.CreatedAt, ID: last.ID}
	}
	require.Equal(t, []uuid.UUID{ids[4], ids[3], ids[2], ids[1], ids[0]}, all)

	comp, err := e.List(context.Background(), saga.ListFilter{State: saga.StateCompensated})
	require.NoError(t, err)
	require.Len(t, comp, 2)
	require.Equal(t, ids[3], comp[0].ID)

	s2, err := e.Get(context.Background(), ids[2])
	require.NoError(t, err)
	older, err := e.List(context.Background(), saga.ListFilter{CreatedBefore: s2.CreatedAt})
	require.NoError(t, err)
	require.Equal(t, []uuid.UUID{ids[1], ids[0]}, []uuid.UUID{older[0].ID, older[1].ID})

	_, err = e.Get(context.Background(), uuid.New())
	require.ErrorIs(t, err, saga.ErrNotFound)
}

func TestNewValidatesDefinitions(t *testing.T) {
	t.Parallel()
	noop := func(context.Context, *saga.Execution) error { return nil }
	tests := map[string]*saga.Definition{
		"bad name":          {Name: "Bad Name", Steps: saga.Sequence(saga.Step{Name: "a"})},
		"no steps":          {Name: "x"},
		"empty group":       {Name: "x", Steps: []saga.Group{{}}},
		"duplicate step":    {Name: "x", Steps: saga.Sequence(saga.Step{Name: "a"}, saga.Step{Name: "a"})},
		"bad step name":     {Name: "x", Steps: saga.Sequence(saga.Step{Name: "a b"})},
		"compensated pivot": {Name: "x", Steps: saga.Sequence(saga.Step{Name: "a", Pivot: true, Compensate: noop})},
		"non-pivot follows": {Name: "x", Steps: saga.Sequence(saga.Step{Name: "a", Pivot: true}, saga.Step{Name: "b"})},
		"pivot in a group":  {Name: "x", Steps: []saga.Group{{saga.Step{Name: "a", Pivot: true}, saga.Step{Name: "b", Pivot: true}}}},
	}
	for name, def := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := saga.New(newDBless{}, newKeys(t), saga.Options{Owner: "r"}, def)
			require.Error(t, err)
		})
	}
	_, err := saga.New(newDBless{}, newKeys(t), saga.Options{}, def3(newWorld()))
	require.ErrorContains(t, err, "Owner")
}

func TestStartFailsAfterRunReturned(t *testing.T) {
	t.Parallel()
	e := startEngine(t, newDB(t), fastOptions("r1"), def3(newWorld()))
	e.stop()
	_, err := e.Start(context.Background(), saga.StartRequest{Type: "three", CorrelationID: "o"})
	require.ErrorIs(t, err, saga.ErrNotRunning)
	require.ErrorIs(t, e.Execute(context.Background(), uuid.New()), saga.ErrNotRunning)
	require.Error(t, e.Run(context.Background()), "Run may be called once")
}

// newDBless stands in for a database where none is touched.
type newDBless struct{ saga.DB }

// The executions' writes are group-committed on a pool, and only there: a
// connection or a transaction must not carry concurrent batches.
func TestEngineGroupCommitsOnAPoolOnly(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	keys, def := newKeys(t), def3(newWorld())
	e, err := saga.New(pool, keys, saga.Options{Owner: "r"}, def)
	require.NoError(t, err)
	require.True(t, e.GroupCommits())
	conn, err := pool.Acquire(t.Context())
	require.NoError(t, err)
	defer conn.Release()
	e, err = saga.New(conn.Conn(), keys, saga.Options{Owner: "r"}, def)
	require.NoError(t, err)
	require.False(t, e.GroupCommits())
	tx, err := pool.Begin(t.Context())
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.Background()) }()
	e, err = saga.New(tx, keys, saga.Options{Owner: "r"}, def)
	require.NoError(t, err)
	require.False(t, e.GroupCommits())
}
