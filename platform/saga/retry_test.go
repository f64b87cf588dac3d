package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/saga"
)

// failFor fails every call with err until d has passed since the first.
func failFor(d time.Duration, err error) func(context.Context, *saga.Execution) error {
	var until time.Time
	return func(context.Context, *saga.Execution) error {
		if until.IsZero() {
			until = time.Now().Add(d) // calls of one step never overlap
		}
		if time.Now().Before(until) {
			return err
		}
		return nil
	}
}

// untilDeadline is the production retry policy, as the orchestrator sets
// it, with the default's backoff: time bounds a step, not its calls.
var untilDeadline = saga.RetryPolicy{MaxAttempts: 3, MaxElapsed: saga.UntilDeadline, Backoff: backoff.Policy{Min: 100 * time.Millisecond, Max: time.Second}}

// alwaysTransient is a neighbour that never comes back.
func alwaysTransient(context.Context, *saga.Execution) error { return errTransient }

// startRetrying runs def3(w) under policy on a fresh database, with the
// saga deadline set to deadline (zero: the engine's, 10 s).
func startRetrying(t *testing.T, w *world, policy saga.RetryPolicy, deadline time.Duration) *engine {
	t.Helper()
	opts := fastOptions("r1")
	opts.Retry = policy
	def := def3(w)
	def.Deadline = deadline
	return startEngine(t, newDB(t), opts, def)
}

// A neighbour down for 6 s — far more than 3 calls' worth of backoff —
// delays the saga but does not fail it: the step retries until the saga
// deadline (30 s), across persisted backoffs.
func TestStepRetriesAnOutageShorterThanTheDeadline(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.on("b", failFor(6*time.Second, errTransient))
	e := startRetrying(t, w, untilDeadline, 30*time.Second)
	id := start(t, e, "three", "o")

	s := waitState(t, e, id, saga.StateCompleted)
	require.Equal(t, []string{"a", "b", "c"}, w.orderOf(id), "nothing compensated")
	b := stepOf(s, "b", saga.PhaseAction)
	require.Greater(t, b.Attempts, 3, "retried past MaxAttempts")
	require.Equal(t, b.Attempts, w.callsOf(key(id, "b", false)), "every call with the step's key")
	require.GreaterOrEqual(t, s.EndedAt.Sub(s.CreatedAt), 6*time.Second)
	require.Contains(t, auditActions(t, e, id), "saga.suspended", "backoffs over InlineRetryWait were persisted and resumed")
	t.Logf("b completed after %d calls, the saga in %v", b.Attempts, s.EndedAt.Sub(s.CreatedAt).Round(time.Millisecond))
}

// A neighbour down past the deadline: the step gives up at the deadline
// and is compensated, its action not called again.
func TestStepFailingPastTheDeadlineCompensates(t *testing.T) {
	t.Parallel()
	w := newWorld()
	w.on("b", alwaysTransient)
	e := startRetrying(t, w, untilDeadline, 2*time.Second)
	id := start(t, e, "three", "o")

	s := waitState(t, e, id, saga.StateCompensated)
	require.Equal(t, "saga deadline exceeded", s.FailureReason)
	require.Equal(t, []string{"a", "-b", "-a"}, w.orderOf(id), "b's unknown outcome undone in reverse")
	b := stepOf(s, "b", saga.PhaseAction)
	// Each attempt is stored before its call, so the stored count bounds
	// the calls; it may exceed them by one when, on a loaded machine, the
	// lease ran out between storing an attempt and making its call (the
	// next owner finds the attempt's outcome unknown and compensates it).
	calls := w.callsOf(key(id, "b", false))
	require.Greater(t, calls, 3, "retried until the deadline, not for MaxAttempts calls")
	require.LessOrEqual(t, calls, b.Attempts, "no call that was not stored first, none during compensation")
	require.Zero(t, w.callsOf(key(id, "c", false)))
	require.Equal(t, saga.StepSucceeded, stepOf(s, "b", saga.PhaseCompensation).Status)
	require.Equal(t, 1.0, counter(t, e.reg, "saga_timeout_total", "saga_type", "three"))
}

// A per-step budget shorter than the deadline ends the retries once it is
// spent and MaxAttempts calls were made, whichever comes last.
func TestStepGivesUpWhenItsBudgetAndAttemptsAreSpent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		policy      saga.RetryPolicy
		minAttempts int
		minElapsed  time.Duration
	}{
		{"the budget outlasts the attempts", saga.RetryPolicy{MaxAttempts: 2, MaxElapsed: 600 * time.Millisecond, Backoff: backoff.Policy{Min: 20 * time.Millisecond, Max: 50 * time.Millisecond}}, 3, 600 * time.Millisecond},
		{"the attempts outlast the budget", saga.RetryPolicy{MaxAttempts: 5, MaxElapsed: time.Millisecond, Backoff: backoff.Policy{Min: 5 * time.Millisecond, Max: 10 * time.Millisecond}}, 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld()
			w.on("b", alwaysTransient)
			e := startRetrying(t, w, tc.policy, 0) // deadline 10 s
			id := start(t, e, "three", "o")

			s := waitState(t, e, id, saga.StateCompensated)
			b := stepOf(s, "b", saga.PhaseAction)
			require.Contains(t, s.FailureReason, "b: unavailable (after ", "gave up on its budget, not the deadline")
			require.GreaterOrEqual(t, b.Attempts, tc.minAttempts)
			if tc.minAttempts == tc.policy.MaxAttempts {
				require.Equal(t, tc.policy.MaxAttempts, b.Attempts, "not one call more than the floor")
			}
			require.NotNil(t, b.EndedAt)
			// The database's clock, not the engine's: a few ms of slack.
			require.GreaterOrEqual(t, b.EndedAt.Sub(b.StartedAt), tc.minElapsed-50*time.Millisecond)
			require.Less(t, s.EndedAt.Sub(s.CreatedAt), 5*time.Second, "well before the deadline")
			require.Equal(t, []string{"a", "-b", "-a"}, w.orderOf(id))
		})
	}
}
