package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/saga"
)

// errInternal is a service's internal error: the call's outcome is
// unknown, whatever happened before the reply was lost.
var errInternal = errors.New("rpc error: code = Internal desc = internal error")

// waitDone waits until saga id has ended (COMPLETED, COMPENSATED or PARKED)
// and returns it.
func waitDone(t testing.TB, e *engine, id uuid.UUID) saga.Saga {
	t.Helper()
	return waitSaga(t, e, id, "ended", func(s saga.Saga) bool { return !s.State.Active() })
}

// actionsAfterCompensating returns the audited starts of action calls made
// once the saga began to compensate.
func actionsAfterCompensating(t testing.TB, e *engine, id uuid.UUID) []string {
	t.Helper()
	recs, err := e.Audit(context.Background(), id)
	require.NoError(t, err)
	var out []string
	compensating := false
	for _, r := range recs {
		if r.Action == "saga.compensating" {
			compensating = true
			continue
		}
		var d struct {
			Step  string `json:"step"`
			Phase string `json:"phase"`
		}
		require.NoError(t, json.Unmarshal(r.Detail, &d))
		if compensating && r.Action == "step.started" && d.Phase == string(saga.PhaseAction) {
			out = append(out, d.Step)
		}
	}
	return out
}

// A step whose effect happened although it answered with an error (a
// payment captured before its reply turned into Internal) is an unknown
// outcome: retried with the same key within its budget, and when the saga
// turns back it is compensated once, without its action being called again.
func TestUnknownOutcomeIsCompensatedWithoutCallingTheActionAgain(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.onAfter("b", func(context.Context, *saga.Execution) error { return errInternal })
	opts := fastOptions("r1")
	opts.CompensationLimit = 2 * time.Second
	e := startEngine(t, newDB(t), opts, def3(w))
	id := start(t, e, "three", "o")

	s := waitDone(t, e, id)
	require.Equal(t, saga.StateCompensated, s.State, "failure reason %q", s.FailureReason)
	require.Equal(t, []string{"a", "b", "-b", "-a"}, w.orderOf(id), "b took effect and is undone")
	require.Equal(t, 3, w.callsOf(key(id, "b", false)), "three attempts with the same key, none during compensation")
	require.Equal(t, 1, w.callsOf(key(id, "b", true)), "compensated once")
	require.Zero(t, w.callsOf(key(id, "c", false)))
	require.Empty(t, actionsAfterCompensating(t, e, id), "no action is called once the saga turns back")
	require.Contains(t, s.FailureReason, "b: rpc error: code = Internal desc = internal error (after 3 attempts)")

	b := stepOf(s, "b", saga.PhaseAction)
	require.Equal(t, saga.StepFailed, b.Status)
	require.False(t, b.Permanent, "an unknown outcome is not a refusal")
	require.Equal(t, 3, b.Attempts)
	bc := stepOf(s, "b", saga.PhaseCompensation)
	require.Equal(t, saga.StepSucceeded, bc.Status)
	require.Equal(t, 1, bc.Attempts)

	recs, err := e.Audit(context.Background(), id)
	require.NoError(t, err)
	var marked bool
	for _, r := range recs {
		var d struct {
			Step, Phase   string
			ActionOutcome string `json:"action_outcome"`
		}
		require.NoError(t, json.Unmarshal(r.Detail, &d))
		if r.Action == "step.started" && d.Step == "b" && d.Phase == string(saga.PhaseCompensation) {
			marked = d.ActionOutcome == "unknown"
		}
	}
	require.True(t, marked, "the audit says b was compensated with its outcome unknown")
}

// The pivot confirms, then its reply is lost (Internal) for longer than its
// budget and past the saga deadline: it is retried with the same key until
// its outcome is known, and nothing before it is compensated.
func TestPivotThatCommittedBeforeAnErrorIsRetriedNeverCompensated(t *testing.T) {
	t.Parallel()
	w := newWorld()
	answers := make(chan struct{}) // closed: the replies get through again
	w.onAfter("confirm", func(context.Context, *saga.Execution) error {
		select {
		case <-answers:
			return nil
		default:
			return errInternal
		}
	})
	confirm := saga.Step{Name: "confirm", Action: w.call, Pivot: true}
	def := &saga.Definition{Name: "pivot", Deadline: 500 * time.Millisecond, Steps: saga.Sequence(w.step("a"), w.step("b"), confirm)}
	opts := fastOptions("r1")
	opts.CompensationRetry = backoff.Policy{Min: 10 * time.Millisecond, Max: 40 * time.Millisecond}
	e := startEngine(t, newDB(t), opts, def)
	id := start(t, e, "pivot", "o")

	// Past its budget (3 attempts) and the saga deadline, still retrying.
	require.Eventually(t, func() bool {
		s, err := e.Get(context.Background(), id)
		require.NoError(t, err)
		require.Equal(t, saga.StateRunning, s.State, "failure reason %q", s.FailureReason)
		return stepOf(s, "confirm", saga.PhaseAction).Attempts > 3 && time.Now().After(s.Deadline)
	}, 15*time.Second, 5*time.Millisecond)
	close(answers)

	s := waitDone(t, e, id)
	require.Equal(t, saga.StateCompleted, s.State, "failure reason %q", s.FailureReason)
	require.Equal(t, []string{"a", "b", "confirm"}, w.orderOf(id), "confirmed once, nothing undone")
	attempts := stepOf(s, "confirm", saga.PhaseAction).Attempts
	require.Greater(t, attempts, 3)
	require.Equal(t, attempts, w.callsOf(key(id, "confirm", false)), "every retry with the pivot's key")
	require.Zero(t, w.callsOf(key(id, "a", true)))
	require.Zero(t, w.callsOf(key(id, "b", true)))
	require.True(t, s.EndedAt.After(s.Deadline), "retried past the saga deadline")
	require.NotContains(t, auditActions(t, e, id), "saga.compensating")
}

// A documented refusal (Permanent) means the refused step did nothing:
// it is not compensated, the steps before it are, in reverse — also when
// the refusal answers a retry of an earlier unknown outcome under the same
// key, and when an earlier step had an unknown outcome before succeeding.
func TestRefusedStepIsNotCompensatedEarlierStepsAre(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.onAfter("b", failTimes(1, errInternal)) // took effect, reply lost; the retry is told so
	w.on("c", func(_ context.Context, x *saga.Execution) error {
		if x.Attempt == 1 {
			return errTransient
		}
		return saga.Permanent(errors.New("insufficient stock"))
	})
	e, id := runThree(t, w, "o")

	s := waitDone(t, e, id)
	require.Equal(t, saga.StateCompensated, s.State)
	require.Equal(t, []string{"a", "b", "-b", "-a"}, w.orderOf(id))
	require.Equal(t, 2, w.callsOf(key(id, "b", false)))
	require.Equal(t, 2, w.callsOf(key(id, "c", false)))
	require.Zero(t, w.callsOf(key(id, "c", true)), "the refused step is not compensated")
	require.Equal(t, "c: insufficient stock", s.FailureReason)
	c := stepOf(s, "c", saga.PhaseAction)
	require.True(t, c.Permanent)
	require.Equal(t, saga.StepFailed, c.Status)
}

// Options.Authorize refusing a retry does not make an earlier attempt of
// unknown outcome harmless: that step is compensated.
func TestAuthorizeRefusalAfterAnUnknownAttemptCompensatesTheStep(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.onAfter("b", func(context.Context, *saga.Execution) error { return errInternal })
	opts := fastOptions("r1")
	opts.Authorize = func(_ context.Context, x *saga.Execution) error {
		if x.Step == "b" && x.Attempt > 1 {
			return errors.New("user is blocked")
		}
		return nil
	}
	e := startEngine(t, newDB(t), opts, def3(w))
	id := start(t, e, "three", "o")

	s := waitDone(t, e, id)
	require.Equal(t, saga.StateCompensated, s.State)
	require.Equal(t, []string{"a", "b", "-b", "-a"}, w.orderOf(id), "b's first call took effect and is undone")
	require.Equal(t, 1, w.callsOf(key(id, "b", false)))
	require.Equal(t, "b: permission denied: user is blocked", s.FailureReason)
	require.False(t, stepOf(s, "b", saga.PhaseAction).Permanent)
}

// Payment hangs past the saga deadline, then refuses connections during the
// compensation, then comes back. The compensation refunds directly: it never
// calls the charge again, so the card is not charged only to be refunded.
func TestServiceDownPastTheDeadlineCompensationNeverCallsTheAction(t *testing.T) {
	t.Parallel()
	w := newWorld()
	up := make(chan struct{})
	calledWhileDown := make(chan struct{})
	var once sync.Once
	signal := func() { once.Do(func() { close(calledWhileDown) }) }
	// A hung service: the call waits until the service is back (then it
	// acts) or the caller gives up.
	w.on("b", func(ctx context.Context, x *saga.Execution) error {
		if x.Attempt > 1 {
			signal() // a call after the deadline, while still down
		}
		select {
		case <-up:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	w.on("-b", func(context.Context, *saga.Execution) error {
		select {
		case <-up:
			return nil
		default:
			signal()
			return errTransient
		}
	})
	def := def3(w)
	def.Deadline = 300 * time.Millisecond
	e := startEngine(t, newDB(t), fastOptions("r1"), def)
	id := start(t, e, "three", "o")

	select {
	case <-calledWhileDown:
	case <-time.After(15 * time.Second):
		t.Fatal("nothing was called after the deadline")
	}
	s, err := e.Get(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, saga.StateCompensating, s.State)
	close(up)

	s = waitDone(t, e, id)
	require.Equal(t, saga.StateCompensated, s.State)
	require.Equal(t, "saga deadline exceeded", s.FailureReason)
	require.Equal(t, []string{"a", "-b", "-a"}, w.orderOf(id), "b never took effect: no charge then refund")
	require.Equal(t, 1, w.callsOf(key(id, "b", false)), "only the call cut by the deadline")
	require.GreaterOrEqual(t, w.callsOf(key(id, "b", true)), 2, "the refund waited for the service")
	require.Empty(t, actionsAfterCompensating(t, e, id))
}

// A user blocked while the pivot's outcome is unknown (its first call
// committed, the reply was lost) does not turn the saga back past it: the
// pivot is retried and the saga completes.
func TestAuthorizeDoesNotTurnBackAPivotThatWasCalled(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.onAfter("confirm", failTimes(1, errInternal))
	var asked atomic.Int32
	opts := fastOptions("r1")
	opts.Authorize = func(_ context.Context, x *saga.Execution) error {
		if x.Step == "confirm" && x.Attempt > 1 {
			asked.Add(1)
			return errors.New("user is blocked")
		}
		return nil
	}
	def := &saga.Definition{Name: "pivot", Steps: saga.Sequence(w.step("a"), saga.Step{Name: "confirm", Action: w.call, Pivot: true})}
	e := startEngine(t, newDB(t), opts, def)
	id := start(t, e, "pivot", "o")

	s := waitDone(t, e, id)
	require.Equal(t, saga.StateCompleted, s.State, "failure reason %q", s.FailureReason)
	require.Equal(t, []string{"a", "confirm"}, w.orderOf(id))
	require.Equal(t, 2, w.callsOf(key(id, "confirm", false)))
	require.Zero(t, asked.Load(), "not asked once the pivot was called")
}
