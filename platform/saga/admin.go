package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/saga/sagadb"
)

// Saga is a saga as operators see it: no context (it is sealed), no lease.
type Saga struct {
	ID            uuid.UUID
	Type          string
	CorrelationID string
	State         State
	FailureReason string
	StartedBy     string
	Steps         []StepRecord
	CreatedAt     time.Time
	UpdatedAt     time.Time
	Deadline      time.Time
	// EndedAt is set for COMPLETED and COMPENSATED sagas.
	EndedAt *time.Time
}

// StepRecord is one step and phase of a saga with its attempts.
type StepRecord struct {
	Name      string
	Phase     Phase
	Status    StepStatus
	Attempts  int
	LastError string
	// Permanent marks an action that failed for a business reason.
	Permanent bool
	StartedAt time.Time
	EndedAt   *time.Time
}

// AuditRecord is one row of a saga's audit trail.
type AuditRecord struct {
	Actor  string
	Action string
	// Detail is the JSON object recorded with the action.
	Detail json.RawMessage
	At     time.Time
}

// Get returns saga id with its step history, or ErrNotFound.
func (e *Engine) Get(ctx context.Context, id uuid.UUID) (Saga, error) {
	s, err := e.q.GetSaga(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Saga{}, ErrNotFound
	}
	if err != nil {
		return Saga{}, fmt.Errorf("saga: get %s: %w", id, err)
	}
	out, err := e.withSteps(ctx, []sagadb.Saga{s})
	if err != nil {
		return Saga{}, err
	}
	return out[0], nil
}

// ListFilter selects sagas for List.
type ListFilter struct {
	// State, when set, lists only sagas in it.
	State State
	// CorrelationID, when set, lists only the sagas of that business key.
	CorrelationID string
	// StartedBy, when set, lists only the sagas started for that user.
	StartedBy string
	// CreatedBefore, when set, lists only sagas created before it.
	CreatedBefore time.Time
	// After continues a listing after this saga (the last one of the
	// previous page): keyset pagination on (creation time, id).
	After *ListCursor
	// Limit bounds the page; 0 means 20, at most 1000.
	Limit int
}

// ListCursor is the position after which a listing continues.
type ListCursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

// List returns sagas newest first, with their steps.
func (e *Engine) List(ctx context.Context, f ListFilter) ([]Saga, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 20
	}
	limit = min(limit, 1000)
	p := sagadb.ListSagasParams{State: string(f.State), CorrelationID: f.CorrelationID, StartedBy: f.StartedBy, PageLimit: int32(limit)}
	if !f.CreatedBefore.IsZero() {
		p.CreatedBefore = &f.CreatedBefore
	}
	if f.After != nil {
		p.AfterCreatedAt, p.AfterID = &f.After.CreatedAt, &f.After.ID
	}
	rows, err := e.q.ListSagas(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("saga: list: %w", err)
	}
	return e.withSteps(ctx, rows)
}

// Audit returns the audit trail of saga id, oldest first.
func (e *Engine) Audit(ctx context.Context, id uuid.UUID) ([]AuditRecord, error) {
	rows, err := e.q.ListSagaAudit(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("saga: audit of %s: %w", id, err)
	}
	out := make([]AuditRecord, len(rows))
	for i, r := range rows {
		out[i] = AuditRecord{Actor: r.Actor, Action: r.Action, Detail: r.Detail, At: r.CreatedAt}
	}
	return out, nil
}

// Retry resumes the compensation of a PARKED saga with a fresh compensation
// limit; actor (the operator) is audited. The saga is claimed and executed
// by this replica at once when it is running (otherwise by the recovery
// loop of any replica). It returns ErrNotFound, or ErrIllegalState for a
// saga that is not PARKED.
func (e *Engine) Retry(ctx context.Context, id uuid.UUID, actor string) (Saga, error) {
	return e.operate(ctx, id, func(s sagadb.Saga, _ []sagadb.SagaStep) (sagadb.UpdateSagaByOperatorParams, error) {
		if State(s.State) != StateParked {
			return sagadb.UpdateSagaByOperatorParams{}, fmt.Errorf("%w: only a PARKED saga can be retried; this one is %s", ErrIllegalState, s.State)
		}
		return sagadb.UpdateSagaByOperatorParams{
			State: string(StateCompensating), FailureReason: s.FailureReason,
			Actor: actor, Action: "saga.retried", Detail: []byte("{}"),
		}, nil
	})
}

// Abort makes a RUNNING saga compensate now, with reason; actor (the
// operator) is audited. The replica executing it loses its lease (its
// in-flight call finishes unrecorded; its outcome is unknown, so that step
// is compensated too). It returns ErrNotFound, or ErrIllegalState for a
// saga that is not RUNNING or has passed a pivot step.
func (e *Engine) Abort(ctx context.Context, id uuid.UUID, actor, reason string) (Saga, error) {
	return e.operate(ctx, id, func(s sagadb.Saga, steps []sagadb.SagaStep) (sagadb.UpdateSagaByOperatorParams, error) {
		if State(s.State) != StateRunning {
			return sagadb.UpdateSagaByOperatorParams{}, fmt.Errorf("%w: only a RUNNING saga can be aborted; this one is %s", ErrIllegalState, s.State)
		}
		if def, ok := e.defs[s.SagaType]; ok && pivotStarted(def, steps) {
			return sagadb.UpdateSagaByOperatorParams{}, fmt.Errorf("%w: the saga has passed its point of no return and can only complete", ErrIllegalState)
		}
		if reason == "" {
			reason = "aborted by an operator"
		}
		detail, err := json.Marshal(map[string]string{"reason": reason})
		if err != nil {
			return sagadb.UpdateSagaByOperatorParams{}, err
		}
		return sagadb.UpdateSagaByOperatorParams{
			State: string(StateCompensating), FailureReason: reason,
			Actor: actor, Action: "saga.aborted", Detail: detail,
		}, nil
	})
}

// operate applies an operator's change under optimistic locking: read,
// decide, update at the version read, and start again on a conflict (the
// saga moved meanwhile).
func (e *Engine) operate(ctx context.Context, id uuid.UUID,
	decide func(sagadb.Saga, []sagadb.SagaStep) (sagadb.UpdateSagaByOperatorParams, error),
) (Saga, error) {
	err := optlock.Retry(ctx, optlock.Policy{MaxAttempts: 10, Backoff: backoff.Policy{Min: 5 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: backoff.FullJitter}},
		nil, "saga", func(ctx context.Context) error {
			s, err := e.q.GetSaga(ctx, id)
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrNotFound
			}
			if err != nil {
				return fmt.Errorf("saga: read %s: %w", id, err)
			}
			steps, err := e.q.ListSagaSteps(ctx, []uuid.UUID{id})
			if err != nil {
				return fmt.Errorf("saga: read steps of %s: %w", id, err)
			}
			p, err := decide(s, steps)
			if err != nil {
				return err
			}
			p.ID, p.Version = id, s.Version
			if _, err := e.q.UpdateSagaByOperator(ctx, p); errors.Is(err, pgx.ErrNoRows) {
				return optlock.ErrConflict
			} else if err != nil {
				return fmt.Errorf("saga: update %s: %w", id, err)
			}
			return nil
		})
	if err != nil {
		return Saga{}, err
	}
	// Run it here now if a worker is free; otherwise any replica's recovery
	// loop claims it (it is due and unleased). An operator's call never
	// waits for a worker.
	if e.tryAcquire() {
		if xerr := e.executeHeld(ctx, id); xerr != nil {
			e.log.WarnContext(ctx, "saga: execute after operator action", "saga_id", id, "error", xerr)
		}
	}
	e.wake()
	return e.Get(ctx, id)
}

func pivotStarted(def *Definition, steps []sagadb.SagaStep) bool {
	started := map[string]bool{}
	for _, s := range steps {
		if Phase(s.Phase) == PhaseAction {
			started[s.Name] = true
		}
	}
	for _, g := range def.Steps {
		for _, s := range g {
			if s.Pivot && started[s.Name] {
				return true
			}
		}
	}
	return false
}

// withSteps converts rows to Sagas with their steps (one query for all).
func (e *Engine) withSteps(ctx context.Context, rows []sagadb.Saga) ([]Saga, error) {
	out := make([]Saga, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	ids := make([]uuid.UUID, len(rows))
	for i, r := range rows {
		ids[i] = r.ID
	}
	steps, err := e.q.ListSagaSteps(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("saga: read steps: %w", err)
	}
	bySaga := map[uuid.UUID][]StepRecord{}
	for _, s := range steps {
		bySaga[s.SagaID] = append(bySaga[s.SagaID], StepRecord{
			Name: s.Name, Phase: Phase(s.Phase), Status: StepStatus(s.Status), Attempts: int(s.Attempts),
			LastError: s.LastError, Permanent: s.Permanent, StartedAt: s.StartedAt, EndedAt: s.EndedAt,
		})
	}
	for i, r := range rows {
		out[i] = Saga{
			ID: r.ID, Type: r.SagaType, CorrelationID: r.CorrelationID, State: State(r.State),
			FailureReason: r.FailureReason, StartedBy: r.StartedBy, Steps: bySaga[r.ID],
			CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Deadline: r.Deadline, EndedAt: r.EndedAt,
		}
	}
	return out, nil
}
