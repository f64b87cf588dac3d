package saga

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"time"

	"github.com/google/uuid"

	"github.com/goodgo/goodgo/platform/backoff"
)

// Definition is a saga type written as data: ordered groups of steps. The
// groups run one after another; the steps of one group run in parallel. When
// a step fails for good, the engine compensates every step that took effect
// or may have, in reverse order (groups last to first, and within a group
// last to first).
type Definition struct {
	// Name is the saga type, stored on every instance ("order_checkout"):
	// lower-case letters, digits and '_', '-', '.', starting with a letter.
	Name string
	// Steps are the groups, in order. A Group of one step is the usual case.
	Steps []Group
	// Deadline bounds the whole saga from its start; when it passes, a saga
	// that has not reached a pivot step compensates. Zero means
	// Options.Deadline.
	Deadline time.Duration
}

// Group is a set of steps run in parallel. The group succeeds when all of
// them have; the first permanent failure cancels the others (their
// outcome is then unknown and they are compensated like the rest). A pivot
// step is alone in its group: nothing may cancel it.
type Group []Step

// Sequence returns one group per step: the steps run one after another.
func Sequence(steps ...Step) []Group {
	groups := make([]Group, len(steps))
	for i, s := range steps {
		groups[i] = Group{s}
	}
	return groups
}

// Func is a step's action or compensation. It must be idempotent under the
// key x.IdempotencyKey(): the engine calls it again with the same key after
// a crash, a lost lease or an error, and expects the effect to happen once.
// ctx carries the attempt's timeout and the step's span.
//
// An action returns an error wrapped with Permanent only for a refusal that
// the service documents as doing nothing (payment declined, not enough
// stock): the step is known to have had no effect. Any other error (a
// timeout, a lost reply, an internal error of the service) leaves the
// step's outcome unknown: the action is retried with the same key within
// its RetryPolicy and, if the saga turns back instead, the step is
// compensated like a step that succeeded — its action is never called
// again. A compensation must therefore be safe, and absorbing, for an
// action that never took effect or is still in flight (a refund of a
// payment that does not exist records it as void, so that a late charge is
// a no-op).
type Func func(ctx context.Context, x *Execution) error

// Step is one local transaction of another service and its undo.
type Step struct {
	// Name identifies the step in storage, idempotency keys and spans
	// (saga.step.<name>): same character set as Definition.Name, unique
	// within the definition.
	Name string
	// Action does the step. Nil is a step with nothing to do whose
	// compensation must still run when the saga compensates (for example
	// "cancel the order" for an order that existed before the saga).
	Action Func
	// Compensate undoes the action, or makes sure an action of unknown
	// outcome never takes effect (see Func). Nil: nothing to undo.
	// Compensations are retried until they succeed, whatever the error, with
	// Options.CompensationRetry backoff, until Options.CompensationLimit;
	// then the saga is PARKED for an operator.
	Compensate Func
	// Timeout bounds each attempt (and never extends past the saga
	// deadline). Zero means Options.StepTimeout.
	Timeout time.Duration
	// Retry is the policy for errors of unknown outcome of the action. The
	// zero value means Options.Retry.
	Retry RetryPolicy
	// Pivot marks the point of no return (for example confirming the
	// order). Once a pivot's action has started, the saga no longer
	// compensates on its deadline or on an operator's abort, and errors of
	// unknown outcome are retried without limit (capped backoff), with the
	// same key, until the outcome is known: a pivot that may have taken
	// effect is never turned back. Only a Permanent refusal of the pivot
	// itself compensates the steps before it. A pivot has no compensation,
	// is alone in its group, and every step after a pivot is a pivot too.
	Pivot bool
}

// RetryPolicy bounds the retries of an action whose outcome is unknown; the
// waits between them are Backoff's.
//
// An action whose outcome stays unknown is retried until it has been called
// MaxAttempts times and MaxElapsed has passed since its first call — both —
// and never past the saga deadline. So time, not a count, bounds a step
// whose neighbour is down: with MaxElapsed UntilDeadline (DefaultRetry) a
// neighbour that restarts within the deadline never makes the saga give
// up, however many calls fail meanwhile; MaxAttempts only guarantees a
// step its calls when MaxElapsed is short. MaxElapsed zero bounds the
// step by MaxAttempts alone.
type RetryPolicy struct {
	// MaxAttempts is the least number of calls of an action (first call
	// included) before it may give up, within the saga deadline.
	MaxAttempts int
	// MaxElapsed is the time budget of an action's retries, from its first
	// call (the step row's started_at, so it survives a takeover): the
	// action gives up once it is spent and MaxAttempts calls were made.
	// UntilDeadline: the saga deadline alone.
	MaxElapsed time.Duration
	// Backoff is the wait before retry n, from the persisted attempt count
	// (so it survives a takeover too).
	Backoff backoff.Policy
}

// UntilDeadline is a RetryPolicy.MaxElapsed that retries an action of
// unknown outcome until the saga deadline.
const UntilDeadline = time.Duration(math.MaxInt64)

// exhausted reports whether an action called attempts times, first at
// started, has spent its budget in a saga due at deadline.
func (p RetryPolicy) exhausted(attempts int, started, deadline time.Time) bool {
	if attempts < p.MaxAttempts {
		return false
	}
	if p.MaxElapsed == UntilDeadline {
		return !time.Now().Before(deadline)
	}
	return time.Since(started) >= p.MaxElapsed
}

func (p RetryPolicy) isZero() bool { return p == RetryPolicy{} }

// Phase tells a step's action from its compensation.
type Phase string

// Phases, as stored.
const (
	PhaseAction       Phase = "ACTION"
	PhaseCompensation Phase = "COMPENSATION"
)

// Execution is what a step function knows about the call it is making.
type Execution struct {
	SagaID        uuid.UUID
	SagaType      string
	CorrelationID string
	// StartedBy is the user whose request started the saga.
	StartedBy string
	Step      string
	Phase     Phase
	// Attempt counts the calls of this step and phase, from 1, across
	// crashes and replicas.
	Attempt int
	// Data is the saga context given to Start, decrypted. Read only.
	Data []byte
	// FailureReason is why the saga compensates (compensation phase).
	FailureReason string
}

// IdempotencyKey is the key of every call of this step and phase:
// "saga:<id>:<step>" for the action and "saga:<id>:<step>:compensate" for
// the compensation. It is the same on every attempt, so a call repeated
// after a crash is recognised by the service and acts once.
func (x *Execution) IdempotencyKey() string {
	k := "saga:" + x.SagaID.String() + ":" + x.Step
	if x.Phase == PhaseCompensation {
		k += ":compensate"
	}
	return k
}

// permanentError marks a documented refusal.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as a documented refusal (payment declined, not
// enough stock): the service says it did nothing under the step's
// idempotency key, so the action is not retried, the saga compensates at
// once, and the refused step itself is not compensated. Never wrap an error
// whose outcome is unknown (a timeout, an internal error, a lost reply):
// that step may have taken effect. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

var namePattern = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)

// validate checks d's names and pivot rules.
func (d *Definition) validate() error {
	if !namePattern.MatchString(d.Name) {
		return fmt.Errorf("saga: definition name %q must match %s", d.Name, namePattern)
	}
	if len(d.Steps) == 0 {
		return fmt.Errorf("saga: definition %s has no steps", d.Name)
	}
	seen := map[string]bool{}
	pivot := false
	for gi, g := range d.Steps {
		if len(g) == 0 {
			return fmt.Errorf("saga: definition %s: group %d is empty", d.Name, gi)
		}
		groupPivot := false
		for _, s := range g {
			if !namePattern.MatchString(s.Name) {
				return fmt.Errorf("saga: definition %s: step name %q must match %s", d.Name, s.Name, namePattern)
			}
			if seen[s.Name] {
				return fmt.Errorf("saga: definition %s: step %q appears twice", d.Name, s.Name)
			}
			seen[s.Name] = true
			if s.Pivot && s.Compensate != nil {
				return fmt.Errorf("saga: definition %s: pivot step %q cannot have a compensation", d.Name, s.Name)
			}
			if pivot && !s.Pivot {
				return fmt.Errorf("saga: definition %s: step %q follows a pivot and must be a pivot", d.Name, s.Name)
			}
			if s.Pivot && len(g) > 1 {
				// A sibling's failure would cancel the pivot mid-call and
				// turn the saga back past a pivot that may have committed.
				return fmt.Errorf("saga: definition %s: pivot step %q must be alone in its group", d.Name, s.Name)
			}
			groupPivot = groupPivot || s.Pivot
		}
		pivot = pivot || groupPivot
	}
	return nil
}
