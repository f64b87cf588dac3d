package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/failpoint"
)

// errSiblingFailed cancels the other steps of a parallel group when one
// fails for good: the saga compensates at once.
var errSiblingFailed = errors.New("saga: another step of the group failed")

// maxErrorText bounds the error text stored and audited per step.
const maxErrorText = 500

// execution runs one saga on this replica, from its current state until it
// ends, is suspended (persisted backoff), loses its lease or the engine
// stops. All changes to the instance happen under mu; flushes too, so the
// steps of a parallel group write one after another.
type execution struct {
	e      *Engine
	in     *instance
	ctx    context.Context
	cancel context.CancelCauseFunc
	done   chan struct{}
	after  <-chan struct{} // an earlier execution of the same saga to wait for
	// inserted, for Start, receives the outcome of the first flush.
	inserted chan<- error
	// finishing is set before the lease is given up on purpose, so that the
	// renewer does not count the release as a loss.
	finishing atomicBool
	// stored is set once the saga row exists; before that there is nothing
	// to renew.
	stored atomicBool
	// leaseUntil is when this replica's lease on the saga may end, by
	// Engine.leaseClock: the start of the last write that extended it (a
	// flush, a renewal) plus LeaseTTL. The database's lease_until is never
	// earlier, since it was set by that write. Zero until the execution's
	// first flush, before which it calls nothing.
	leaseUntil atomic.Int64

	mu     sync.Mutex
	log    *slog.Logger
	remote trace.SpanContext // the trace the saga continues
}

type resultKind int

const (
	resOK        resultKind = iota
	resFailed               // the step failed for good: compensate
	resSuspend              // retry after delay, persisted; release the saga
	resStopped              // engine stopping, lease lost or database error
	resAbandoned            // cancelled because a sibling failed
	resParked               // compensation limit reached
)

type result struct {
	kind     resultKind
	reason   string
	timedOut bool
	delay    time.Duration
	err      error
}

func (x *execution) run() {
	defer x.e.end(x)
	if x.after != nil {
		<-x.after
	}
	in := x.in
	x.log = x.e.log.With("saga_id", in.id.String(), "saga_type", in.def.Name)
	carrier := propagation.MapCarrier{"traceparent": in.traceparent, "tracestate": in.tracestate}
	x.remote = trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
	if in.inserted {
		x.stored.Store(true)
	}
	err := x.loop()
	if x.inserted != nil {
		// The first flush never happened (stopped before it).
		x.inserted <- errors.Join(ErrNotRunning, err)
	}
	switch {
	case errors.Is(context.Cause(x.ctx), errLeaseExpired):
		x.e.m.leaseLost.Inc()
		x.log.WarnContext(x.logCtx(), "saga lease not renewed in time; execution stopped, the saga resumes once the lease expires")
	case errors.Is(context.Cause(x.ctx), errLost) || errors.Is(err, errLost):
		x.e.m.leaseLost.Inc()
		x.log.WarnContext(x.logCtx(), "saga lease lost; another replica continues it")
	case x.ctx.Err() != nil:
		x.log.DebugContext(x.logCtx(), "saga execution stopped", "state", in.state)
	case err != nil && !errors.Is(err, errDuplicate):
		// The lease runs out and the saga is resumed from what was stored.
		x.log.ErrorContext(x.logCtx(), "saga execution failed; it resumes after its lease expires", "error", err)
	}
}

// logCtx carries the saga's trace, so that log lines have its trace id.
func (x *execution) logCtx() context.Context {
	if x.remote.IsValid() {
		return trace.ContextWithRemoteSpanContext(context.Background(), x.remote)
	}
	return context.Background()
}

func (x *execution) loop() error {
	for {
		var (
			stop bool
			err  error
		)
		switch x.in.state {
		case StateRunning:
			stop, err = x.forward()
		case StateCompensating:
			stop, err = x.compensate()
		default:
			return nil
		}
		if stop || err != nil {
			return err
		}
	}
}

// flush writes pending changes (see instance.flush); mu must be held.
func (x *execution) flush(o flushOpts) error {
	first := !x.in.inserted
	sent := x.e.leaseClock()
	x.e.flushes.RLock()
	err := x.in.flush(x.ctx, x.e.grouped, x.e.opts.Owner, x.e.opts.LeaseTTL, o)
	x.e.flushes.RUnlock()
	if first && x.inserted != nil {
		x.inserted <- err
		x.inserted = nil
	}
	if err == nil {
		x.stored.Store(true)
		if !o.release {
			x.extendLease(sent)
		}
		return nil
	}
	if cause := context.Cause(x.ctx); cause != nil {
		return cause
	}
	return err
}

func (x *execution) owner() string { return x.e.opts.Owner }

// extendLease records that a write sent at sent (Engine.leaseClock)
// extended the lease by LeaseTTL.
func (x *execution) extendLease(sent time.Duration) {
	until := int64(sent + x.e.opts.LeaseTTL)
	for {
		cur := x.leaseUntil.Load()
		if cur >= until || x.leaseUntil.CompareAndSwap(cur, until) {
			return
		}
	}
}

// forward runs the groups from the cursor on. It returns stop = true when
// the execution ends here (saga finished, suspended or stopped).
func (x *execution) forward() (bool, error) {
	def := x.in.def
	for x.in.state == StateRunning {
		if x.in.cursor >= len(def.Steps) {
			return true, x.finish(StateCompleted, "")
		}
		gi := x.in.cursor
		g := def.Steps[gi]
		x.in.markNoops(gi, g, x.owner())
		if !time.Now().Before(x.in.deadline) && !x.pastPivot() {
			x.toCompensating("saga deadline exceeded", true)
			return false, nil
		}
		res := x.runGroup(gi, g)
		switch res.kind {
		case resOK:
			x.in.cursor++
		case resFailed:
			x.toCompensating(res.reason, res.timedOut)
			return false, nil
		case resSuspend:
			return true, x.suspend(res.delay)
		default:
			return true, res.err
		}
	}
	return false, nil
}

// pastPivot reports whether a pivot step has started: the saga can then
// only go forward.
func (x *execution) pastPivot() bool {
	for _, g := range x.in.def.Steps {
		for _, s := range g {
			if s.Pivot && x.in.lookup(s.Name, PhaseAction) != nil {
				return true
			}
		}
	}
	return false
}

// pivotCalled reports whether a pivot step's action has been called: it
// may have taken effect, so the saga can only complete.
func (x *execution) pivotCalled() bool {
	for _, g := range x.in.def.Steps {
		for _, s := range g {
			if r := x.in.lookup(s.Name, PhaseAction); s.Pivot && r != nil && r.attempts > 0 {
				return true
			}
		}
	}
	return false
}

func (x *execution) toCompensating(reason string, timedOut bool) {
	x.in.state, x.in.failureReason = StateCompensating, reason
	x.in.compStarted = time.Now()
	detail := map[string]any{"reason": reason}
	if timedOut {
		detail["timeout"] = true
		x.e.m.timeouts.WithLabelValues(x.in.def.Name).Inc()
	}
	x.in.audit(x.owner(), "saga.compensating", detail)
	x.log.InfoContext(x.logCtx(), "saga compensating", "reason", reason, "timeout", timedOut)
}

// runGroup runs the actions of group gi that have not succeeded yet, in
// parallel when there are several.
func (x *execution) runGroup(gi int, g Group) result {
	var todo []*Step
	for i := range g {
		s := &g[i]
		if s.Action == nil {
			continue
		}
		if r := x.in.lookup(s.Name, PhaseAction); r != nil && r.status == StepSucceeded {
			continue
		}
		todo = append(todo, s)
	}
	switch len(todo) {
	case 0:
		return result{kind: resOK}
	case 1:
		return x.runAction(x.ctx, gi, todo[0])
	}
	gctx, cancel := context.WithCancelCause(x.ctx)
	defer cancel(nil)
	results := make([]result, len(todo))
	var wg sync.WaitGroup
	for i, s := range todo {
		wg.Go(func() {
			results[i] = x.runAction(gctx, gi, s)
			if results[i].kind == resFailed {
				cancel(errSiblingFailed)
			}
		})
	}
	wg.Wait()
	// Stopping wins (nothing may be written), then the first failure, then
	// the longest backoff.
	out := result{kind: resOK}
	for _, r := range results {
		switch {
		case r.kind == resStopped:
			return r
		case r.kind == resFailed && out.kind != resFailed:
			out = r
		case r.kind == resSuspend && out.kind == resOK:
			out = r
		case r.kind == resSuspend && out.kind == resSuspend:
			out.delay = max(out.delay, r.delay)
		}
	}
	return out
}

// runAction calls step s's action until it succeeds, fails for good, must
// wait longer than InlineRetryWait, or the execution stops. Each attempt is
// recorded (RUNNING, attempts + 1) before the call.
func (x *execution) runAction(ctx context.Context, gi int, s *Step) result {
	policy := s.Retry
	if policy.isZero() {
		policy = x.e.opts.Retry
	}
	policy.MaxAttempts = max(policy.MaxAttempts, 1)
	for {
		x.mu.Lock()
		r := x.in.row(s.Name, PhaseAction, gi)
		var exec *Execution
		prestarted := r.prestarted
		r.prestarted = false
		if prestarted && x.leaseLeft() && (s.Pivot || time.Now().Before(x.in.deadline)) {
			// The saga's insert recorded this attempt (StartTx) and
			// nothing has happened since: call it.
			exec = x.in.execution(s.Name, PhaseAction, r.attempts)
			x.mu.Unlock()
		} else {
			var stop *result
			if exec, stop = x.recordAttempt(ctx, s, r); stop != nil {
				return *stop
			}
		}

		callErr := x.call(ctx, s, PhaseAction, exec, !s.Pivot)
		// The remote call returned; its outcome is not stored yet.
		failpoint.Hit("orchestrator.saga.after-step-call")

		x.mu.Lock()
		if x.ctx.Err() != nil {
			x.mu.Unlock()
			return result{kind: resStopped, err: context.Cause(x.ctx)}
		}
		if callErr == nil {
			r.status, r.lastError, r.dirty = StepSucceeded, "", true
			x.in.audit(x.owner(), "step.succeeded", map[string]any{"step": s.Name, "phase": PhaseAction, "attempt": exec.Attempt})
			x.mu.Unlock()
			return result{kind: resOK}
		}
		if ctx.Err() != nil {
			// A sibling failed and cancelled this call: its outcome is
			// unknown, so the row stays as it is and compensation undoes it.
			x.mu.Unlock()
			return result{kind: resAbandoned}
		}
		msg := errText(callErr)
		r.lastError, r.dirty = msg, true
		detail := map[string]any{"step": s.Name, "phase": PhaseAction, "attempt": exec.Attempt, "error": msg}
		switch {
		case IsPermanent(callErr):
			r.status, r.permanent = StepFailed, true
			detail["permanent"] = true
			x.in.audit(x.owner(), "step.failed", detail)
			x.mu.Unlock()
			x.log.InfoContext(x.logCtx(), "saga step failed", "step", s.Name, "error", msg)
			return result{kind: resFailed, reason: s.Name + ": " + msg}
		case !s.Pivot && !time.Now().Before(x.in.deadline):
			r.status = StepFailed
			detail["timeout"] = true
			x.in.audit(x.owner(), "step.failed", detail)
			x.mu.Unlock()
			return result{kind: resFailed, reason: "saga deadline exceeded", timedOut: true}
		case !s.Pivot && policy.exhausted(exec.Attempt, r.started, x.in.deadline):
			r.status = StepFailed
			x.in.audit(x.owner(), "step.failed", detail)
			x.mu.Unlock()
			x.log.WarnContext(x.logCtx(), "saga step gave up with its outcome unknown", "step", s.Name, "attempts", exec.Attempt, "error", msg)
			return result{kind: resFailed, reason: fmt.Sprintf("%s: %s (after %d attempts)", s.Name, msg, exec.Attempt)}
		}
		x.in.audit(x.owner(), "step.attempt_failed", detail)
		var wait time.Duration
		if !s.Pivot || !policy.exhausted(exec.Attempt, r.started, x.in.deadline) {
			wait = policy.Backoff.Delay(exec.Attempt)
		} else {
			// A pivot past its budget: retry without limit, capped.
			wait = x.e.opts.CompensationRetry.Delay(exec.Attempt - policy.MaxAttempts + 1)
		}
		if !s.Pivot {
			wait = min(wait, time.Until(x.in.deadline))
		}
		x.mu.Unlock()
		x.e.m.retries.WithLabelValues(x.in.def.Name, s.Name, string(PhaseAction)).Inc()
		if wait > x.e.opts.InlineRetryWait {
			return result{kind: resSuspend, delay: wait}
		}
		if err := backoff.Sleep(ctx, wait); err != nil {
			if x.ctx.Err() != nil {
				return result{kind: resStopped, err: context.Cause(x.ctx)}
			}
			return result{kind: resAbandoned}
		}
	}
}

// recordAttempt stores the next attempt of action s (row r) as started,
// before its call, and returns it; mu is held and recordAttempt unlocks it.
// It returns the result instead when the attempt may not be made: the
// deadline passed, Authorize refuses, or the write failed (the lease is
// lost or the engine stops).
func (x *execution) recordAttempt(ctx context.Context, s *Step, r *stepRow) (*Execution, *result) {
	defer x.mu.Unlock()
	if !s.Pivot && !time.Now().Before(x.in.deadline) {
		r.status, r.lastError, r.dirty = StepFailed, "saga deadline exceeded", true
		x.in.audit(x.owner(), "step.failed", map[string]any{"step": s.Name, "phase": PhaseAction, "attempt": r.attempts, "error": r.lastError, "timeout": true})
		return nil, &result{kind: resFailed, reason: "saga deadline exceeded", timedOut: true}
	}
	exec := x.in.execution(s.Name, PhaseAction, r.attempts+1)
	// Past a pivot that was called, a refusal could only turn the saga
	// back from an effect that may have happened: it completes.
	if authorize := x.e.opts.Authorize; authorize != nil && !x.pivotCalled() {
		if err := authorize(ctx, exec); err != nil {
			msg := errText(fmt.Errorf("permission denied: %w", err))
			// Nothing is called now; but an earlier attempt whose
			// outcome is unknown may have taken effect and must then
			// be compensated.
			r.status, r.permanent, r.lastError, r.dirty = StepFailed, r.attempts == 0, msg, true
			x.in.audit(x.owner(), "step.denied", map[string]any{"step": s.Name, "started_by": x.in.startedBy, "error": msg})
			return nil, &result{kind: resFailed, reason: s.Name + ": " + msg}
		}
	}
	r.status, r.permanent, r.dirty = StepRunning, false, true
	r.attempts++
	x.in.audit(x.owner(), "step.started", map[string]any{"step": s.Name, "phase": PhaseAction, "attempt": r.attempts})
	if err := x.flush(flushOpts{}); err != nil {
		return nil, &result{kind: resStopped, err: err}
	}
	return exec, nil
}

// compensate undoes, from the cursor's group down to the first, every step
// whose action may have taken effect. It returns stop = true when the
// execution ends here.
func (x *execution) compensate() (bool, error) {
	def := x.in.def
	for {
		gi := min(x.in.cursor, len(def.Steps)-1)
		g := def.Steps[gi]
		for i := len(g) - 1; i >= 0; i-- {
			s := &g[i]
			if !x.needsCompensation(s) {
				continue
			}
			res := x.runCompensation(gi, s)
			switch res.kind {
			case resOK:
			case resSuspend:
				return true, x.suspend(res.delay)
			case resParked:
				return true, x.finish(StateParked, res.reason)
			default:
				return true, res.err
			}
		}
		if gi == 0 {
			return true, x.finish(StateCompensated, "")
		}
		x.in.cursor = gi - 1
	}
}

// needsCompensation reports whether s's action took effect or may have,
// and has not been undone yet. An action that was never called, or that the
// service refused (Permanent: it says nothing happened under the step's
// key), took no effect; one that succeeded, or whose outcome is unknown (it
// failed otherwise, ran out of retries or time, or was interrupted), is
// compensated.
func (x *execution) needsCompensation(s *Step) bool {
	if s.Compensate == nil {
		return false
	}
	a := x.in.lookup(s.Name, PhaseAction)
	switch {
	case a == nil:
		return false
	case a.status == StepFailed && a.permanent:
		return false
	case a.status != StepSucceeded && a.attempts == 0:
		return false // failed before its first call (deadline)
	}
	c := x.in.lookup(s.Name, PhaseCompensation)
	return c == nil || c.status != StepSucceeded
}

// runCompensation undoes step s, retrying until it succeeds or the
// compensation limit is reached. An action whose outcome is unknown is
// compensated directly, never called again: calling it would make happen
// what the saga is turning back from (a charge, only to refund it). The
// compensation is safe for an action that never took effect, and absorbing
// for one still in flight (see Func).
func (x *execution) runCompensation(gi int, s *Step) result {
	for {
		x.mu.Lock()
		r := x.in.row(s.Name, PhaseCompensation, gi)
		if limit := x.e.opts.CompensationLimit; !x.in.compStarted.IsZero() && time.Since(x.in.compStarted) > limit {
			r.status, r.dirty = StepFailed, true
			if r.attempts == 0 && r.lastError == "" {
				r.lastError = "not attempted before the compensation limit"
			}
			reason := fmt.Sprintf("could not compensate %s within %s: %s", s.Name, limit, r.lastError)
			x.mu.Unlock()
			return result{kind: resParked, reason: reason}
		}
		detail := map[string]any{"step": s.Name, "phase": PhaseCompensation, "attempt": r.attempts + 1}
		if a := x.in.lookup(s.Name, PhaseAction); a.status != StepSucceeded {
			detail["action_outcome"] = "unknown"
			if a.status == StepRunning {
				// Interrupted mid-call (a crash, an abort, a sibling's
				// failure): it is not called again, so its row ends here.
				a.status, a.lastError, a.dirty = StepFailed, "outcome unknown: the call was interrupted", true
			}
		}
		r.status, r.dirty = StepRunning, true
		r.attempts++
		exec := x.in.execution(s.Name, PhaseCompensation, r.attempts)
		x.in.audit(x.owner(), "step.started", detail)
		err := x.flush(flushOpts{})
		x.mu.Unlock()
		if err != nil {
			return result{kind: resStopped, err: err}
		}

		callErr := x.call(x.ctx, s, PhaseCompensation, exec, false)

		x.mu.Lock()
		if x.ctx.Err() != nil {
			x.mu.Unlock()
			return result{kind: resStopped, err: context.Cause(x.ctx)}
		}
		detail = map[string]any{"step": s.Name, "phase": PhaseCompensation, "attempt": exec.Attempt}
		if callErr == nil {
			r.status, r.lastError, r.dirty = StepSucceeded, "", true
			x.in.audit(x.owner(), "step.succeeded", detail)
			x.mu.Unlock()
			x.e.m.compensations.WithLabelValues(x.in.def.Name, s.Name).Inc()
			x.log.InfoContext(x.logCtx(), "saga step compensated", "step", s.Name, "attempts", exec.Attempt)
			return result{kind: resOK}
		}
		msg := errText(callErr)
		r.lastError, detail["error"] = msg, msg
		x.in.audit(x.owner(), "step.attempt_failed", detail)
		wait := x.e.opts.CompensationRetry.Delay(exec.Attempt)
		if !x.in.compStarted.IsZero() {
			// Try once more right at the limit rather than sleep past it.
			wait = max(min(wait, time.Until(x.in.compStarted.Add(x.e.opts.CompensationLimit))), 0)
		}
		x.mu.Unlock()
		x.e.m.retries.WithLabelValues(x.in.def.Name, s.Name, string(PhaseCompensation)).Inc()
		x.log.WarnContext(x.logCtx(), "saga compensation attempt failed", "step", s.Name, "attempt", exec.Attempt, "error", msg, "retry_in", wait.String())
		if wait > x.e.opts.InlineRetryWait {
			return result{kind: resSuspend, delay: wait}
		}
		if err := backoff.Sleep(x.ctx, wait); err != nil {
			return result{kind: resStopped, err: context.Cause(x.ctx)}
		}
	}
}

// suspend persists what happened and gives the saga up until delay has
// passed; the recovery loop of some replica resumes it.
func (x *execution) suspend(delay time.Duration) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.in.audit(x.owner(), "saga.suspended", map[string]any{"retry_in_ms": delay.Milliseconds()})
	x.finishing.Store(true)
	return x.flush(flushOpts{release: true, delay: delay})
}

// finish stores a final state (or PARKED, saying why in parked) and gives
// the lease up.
func (x *execution) finish(state State, parked string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	in := x.in
	in.state = state
	outcome := map[State]string{StateCompleted: OutcomeCompleted, StateCompensated: OutcomeCompensated, StateParked: OutcomeParked}[state]
	detail := map[string]any{}
	if in.failureReason != "" {
		detail["reason"] = in.failureReason
	}
	if parked != "" {
		// Not stored as the failure reason: compensations may pass that on
		// (a cancellation reason) and must send the same request on every
		// attempt, before and after an operator's retry.
		detail["parked"] = parked
	}
	in.audit(x.owner(), "saga."+outcome, detail)
	x.finishing.Store(true)
	if err := x.flush(flushOpts{release: true}); err != nil {
		return err
	}
	x.e.m.executions.WithLabelValues(in.def.Name, outcome).Inc()
	x.e.m.duration.WithLabelValues(in.def.Name, outcome).Observe(time.Since(in.createdAt).Seconds())
	switch state {
	case StateParked:
		x.log.ErrorContext(x.logCtx(), "saga PARKED: compensation failed; an operator must retry it", "reason", in.failureReason, "parked", parked)
	case StateCompensated:
		x.log.InfoContext(x.logCtx(), "saga compensated", "reason", in.failureReason)
	default:
		x.log.DebugContext(x.logCtx(), "saga completed")
	}
	if f := x.e.opts.OnFinish; f != nil {
		f(in.id, state)
	}
	return nil
}

// leaseLeft reports whether this replica's lease on the saga has more
// than the fence loop's margin left: a call may start.
func (x *execution) leaseLeft() bool {
	until := x.leaseUntil.Load()
	return until != 0 && x.e.leaseClock()+x.e.opts.LeaseTTL/6 < time.Duration(until)
}

// call runs one attempt of s in phase under the step timeout (bounded by
// the saga deadline when bounded), in a span saga.step.<name> that
// continues the saga's trace. A panic in the step is returned as an error.
func (x *execution) call(ctx context.Context, s *Step, phase Phase, exec *Execution, bounded bool) (err error) {
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = x.e.opts.StepTimeout
	}
	deadline := time.Now().Add(timeout)
	if bounded && x.in.deadline.Before(deadline) {
		deadline = x.in.deadline
	}
	cctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	if x.remote.IsValid() {
		cctx = trace.ContextWithRemoteSpanContext(cctx, x.remote)
	}
	cctx, span := x.e.tracer.Start(cctx, "saga.step."+s.Name, trace.WithAttributes(
		attribute.String("saga.id", exec.SagaID.String()),
		attribute.String("saga.type", exec.SagaType),
		attribute.String("saga.step", s.Name),
		attribute.Int("saga.attempt", exec.Attempt),
		attribute.String("saga.phase", string(phase)),
	))
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("saga: step %s panicked: %v", s.Name, p)
		}
		if err != nil {
			span.RecordError(err)
			span.SetStatus(otelcodes.Error, errText(err))
		}
		span.End()
	}()
	fn := s.Action
	if phase == PhaseCompensation {
		fn = s.Compensate
	}
	return fn(cctx, exec)
}

// errText is err's message bounded for storage, cut on a rune boundary.
func errText(err error) string {
	s := err.Error()
	if len(s) <= maxErrorText {
		return s
	}
	s = s[:maxErrorText]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
