package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/goodgo/goodgo/platform/saga/sagadb"
)

// DB is what the engine needs from PostgreSQL: a *pgxpool.Pool, a
// *pgx.Conn or a pgx.Tx. Every engine write is a single statement, so the
// engine never opens transactions of its own; on a pool, the writes of
// concurrent executions are group-committed (postgres.Group: one round
// trip and one commit for several sagas' transitions).
type DB = sagadb.DBTX

// State is a saga's place in its life cycle, as stored.
type State string

// States.
const (
	StateRunning      State = "RUNNING"
	StateCompensating State = "COMPENSATING"
	StateCompleted    State = "COMPLETED"
	StateCompensated  State = "COMPENSATED"
	StateParked       State = "PARKED"
)

// Active reports whether the engine still works on a saga in s.
func (s State) Active() bool { return s == StateRunning || s == StateCompensating }

// StepStatus is the outcome of one step and phase, as stored.
type StepStatus string

// Step statuses.
const (
	StepRunning   StepStatus = "RUNNING"
	StepSucceeded StepStatus = "SUCCEEDED"
	StepFailed    StepStatus = "FAILED"
)

var (
	// errLost reports a write that matched no row: another replica claimed
	// the saga or an operator changed it. The execution stops.
	errLost = errors.New("saga: lease lost")
	// errDuplicate reports an insert that lost to an existing saga of the
	// same type and correlation id.
	errDuplicate = errors.New("saga: already started")
)

type stepKey struct {
	name  string
	phase Phase
}

// stepRow is the in-memory copy of a saga_steps row.
type stepRow struct {
	group     int
	status    StepStatus
	attempts  int
	lastError string
	permanent bool
	// started is when the row was first stored, before the first call
	// (started_at): retry budgets count from it.
	started time.Time
	dirty   bool // changed since the last flush
	// prestarted: the saga's insert (StartTx) recorded this attempt as
	// started, and no execution has called it yet; the first execution
	// calls it without a write of its own (see Engine.prestart).
	prestarted bool
}

type auditEntry struct {
	actor, action string
	detail        map[string]any
}

// instance is the in-memory copy of one saga row and its step rows, owned by
// one execution. Changes accumulate (dirty steps, audits) and reach the
// database in one statement at the next flush, which always happens before
// a remote call: "after step N" rides with "before step N+1". (The first
// calls of a saga from StartTx are recorded by its insert instead.)
type instance struct {
	id            uuid.UUID
	def           *Definition
	correlationID string
	startedBy     string
	data          []byte
	keyID         string
	sealed        []byte
	traceparent   string
	tracestate    string
	state         State
	cursor        int
	failureReason string
	deadline      time.Time
	createdAt     time.Time
	compStarted   time.Time // zero unless compensating or parked
	version       int64
	inserted      bool
	// leaseSent is when StartTx sent the insert that leased the saga
	// (Engine.leaseClock): the start of the lease ExecuteStarted runs on.
	leaseSent time.Duration
	steps     map[stepKey]*stepRow
	audits    []auditEntry
}

// row returns the step row of name and phase, creating it (not yet stored)
// in group.
func (in *instance) row(name string, phase Phase, group int) *stepRow {
	k := stepKey{name, phase}
	r, ok := in.steps[k]
	if !ok {
		r = &stepRow{group: group, status: StepRunning, started: time.Now()}
		in.steps[k] = r
	}
	return r
}

// execution describes a call of step name in phase.
func (in *instance) execution(name string, phase Phase, attempt int) *Execution {
	return &Execution{
		SagaID: in.id, SagaType: in.def.Name, CorrelationID: in.correlationID,
		StartedBy: in.startedBy, Step: name, Phase: phase, Attempt: attempt,
		Data: in.data, FailureReason: in.failureReason,
	}
}

// markNoops records the steps without an action of group gi as succeeded,
// so that their compensation runs if the saga compensates; owner is the
// audit's actor.
func (in *instance) markNoops(gi int, g Group, owner string) {
	for _, s := range g {
		if s.Action != nil || in.lookup(s.Name, PhaseAction) != nil {
			continue
		}
		r := in.row(s.Name, PhaseAction, gi)
		r.status, r.dirty = StepSucceeded, true
		in.audit(owner, "step.succeeded", map[string]any{"step": s.Name, "phase": PhaseAction, "noop": true})
	}
}

// lookup returns the step row of name and phase, or nil.
func (in *instance) lookup(name string, phase Phase) *stepRow {
	return in.steps[stepKey{name, phase}]
}

func (in *instance) audit(actor, action string, detail map[string]any) {
	in.audits = append(in.audits, auditEntry{actor: actor, action: action, detail: detail})
}

// pending returns the changed step rows and the audit rows as the parallel
// arrays the queries take.
type pendingRows struct {
	names, phases, statuses, errs []string
	groups, attempts              []int32
	permanent                     []bool
	actors, actions, details      []string
}

func (in *instance) pending() (pendingRows, error) {
	var p pendingRows
	for k, r := range in.steps {
		if !r.dirty {
			continue
		}
		p.names = append(p.names, k.name)
		p.phases = append(p.phases, string(k.phase))
		p.statuses = append(p.statuses, string(r.status))
		p.errs = append(p.errs, r.lastError)
		p.groups = append(p.groups, int32(r.group))
		p.attempts = append(p.attempts, int32(r.attempts))
		p.permanent = append(p.permanent, r.permanent)
	}
	for _, a := range in.audits {
		d, err := auditJSON(a.detail)
		if err != nil {
			return p, fmt.Errorf("saga: audit detail: %w", err)
		}
		p.actors = append(p.actors, a.actor)
		p.actions = append(p.actions, a.action)
		p.details = append(p.details, string(d))
	}
	return p, nil
}

// auditJSON encodes an audit detail as json.Marshal does (keys sorted; nil
// is {}), by hand for the plain values the engine writes: nine details per
// saga went through reflection, 8 % of the orchestrator's CPU. A value of
// another type, or a string that would need escaping, takes json.Marshal.
func auditJSON(d map[string]any) ([]byte, error) {
	if len(d) == 0 {
		return []byte("{}"), nil
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b := make([]byte, 0, 128)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		ok := plainJSON(k)
		b = append(append(append(b, '"'), k...), '"', ':')
		switch v := d[k].(type) {
		case string:
			ok = ok && plainJSON(v)
			b = append(append(append(b, '"'), v...), '"')
		case Phase:
			ok = ok && plainJSON(string(v))
			b = append(append(append(b, '"'), v...), '"')
		case bool:
			b = strconv.AppendBool(b, v)
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case int32:
			b = strconv.AppendInt(b, int64(v), 10)
		case int64:
			b = strconv.AppendInt(b, v, 10)
		default:
			ok = false
		}
		if !ok {
			out, err := json.Marshal(d)
			if err != nil {
				return nil, fmt.Errorf("encode: %w", err)
			}
			return out, nil
		}
	}
	return append(b, '}'), nil
}

// plainJSON reports whether s is printable ASCII that json.Marshal writes
// as it is, between quotes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			return false
		}
	}
	return true
}

func (in *instance) clean() {
	for _, r := range in.steps {
		r.dirty = false
	}
	in.audits = in.audits[:0]
}

// flushOpts says what a flush does with the lease.
type flushOpts struct {
	release bool          // give the lease up (terminal state or persisted backoff)
	delay   time.Duration // with release: when the saga is due again
}

// flush writes the instance's state and pending rows in one statement: the
// insert of a new saga, or a transition guarded by version and lease owner.
// It returns errDuplicate (insert lost to an existing saga) or errLost
// (transition matched nothing).
func (in *instance) flush(ctx context.Context, q *sagadb.Queries, owner string, lease time.Duration, o flushOpts) error {
	p, err := in.pending()
	if err != nil {
		return err
	}
	if !in.inserted {
		row, err := q.InsertSaga(ctx, sagadb.InsertSagaParams{
			ID: in.id, SagaType: in.def.Name, CorrelationID: in.correlationID, Cursor: int32(in.cursor),
			Context: in.sealed, KeyID: in.keyID, StartedBy: in.startedBy,
			Traceparent: in.traceparent, Tracestate: in.tracestate, DeadlineMs: in.deadline.Sub(in.createdAt).Milliseconds(),
			LeaseOwner: owner, LeaseMs: lease.Milliseconds(),
			StepNames: p.names, StepPhases: p.phases, StepGroups: p.groups, StepStatuses: p.statuses,
			StepAttempts: p.attempts, StepErrors: p.errs, StepPermanent: p.permanent,
			AuditActors: p.actors, AuditActions: p.actions, AuditDetails: p.details,
		})
		if errors.Is(err, pgx.ErrNoRows) {
			return errDuplicate
		}
		if err != nil {
			return fmt.Errorf("saga: insert %s: %w", in.id, err)
		}
		// From here on the database's clock: created_at and the deadline.
		in.inserted, in.version, in.createdAt, in.deadline = true, row.Version, row.CreatedAt, row.Deadline
		in.clean()
		if in.state == StateRunning && !o.release {
			return nil
		}
		// A saga whose very first write is already a compensation or an
		// outcome (its deadline passed before the first step, or it has no
		// actions): the insert stored it RUNNING; the transition below
		// stores the rest.
		if p, err = in.pending(); err != nil {
			return err
		}
	}
	row, err := q.ApplyTransition(ctx, sagadb.ApplyTransitionParams{
		State: string(in.state), Cursor: int32(in.cursor), FailureReason: in.failureReason,
		DelayMs: o.delay.Milliseconds(), Release: o.release, LeaseMs: lease.Milliseconds(),
		ID: in.id, Version: in.version, LeaseOwner: owner,
		StepNames: p.names, StepPhases: p.phases, StepGroups: p.groups, StepStatuses: p.statuses,
		StepAttempts: p.attempts, StepErrors: p.errs, StepPermanent: p.permanent,
		AuditActors: p.actors, AuditActions: p.actions, AuditDetails: p.details,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return errLost
	}
	if err != nil {
		return fmt.Errorf("saga: update %s: %w", in.id, err)
	}
	in.version = row.Version
	if row.CompensationStartedAt != nil {
		in.compStarted = *row.CompensationStartedAt
	}
	in.clean()
	return nil
}

// fromRows rebuilds an instance from its stored rows, decrypting the
// context with open.
func fromRows(s sagadb.Saga, steps []sagadb.SagaStep, def *Definition, open func(keyID string, sealed, aad []byte) ([]byte, error)) (*instance, error) {
	data, err := open(s.KeyID, s.Context, s.ID[:])
	if err != nil {
		return nil, fmt.Errorf("saga: open context of %s: %w", s.ID, err)
	}
	in := &instance{
		id: s.ID, def: def, correlationID: s.CorrelationID, startedBy: s.StartedBy, data: data,
		keyID: s.KeyID, sealed: s.Context, traceparent: s.Traceparent, tracestate: s.Tracestate,
		state: State(s.State), cursor: int(s.Cursor), failureReason: s.FailureReason,
		deadline: s.Deadline, createdAt: s.CreatedAt, version: s.Version, inserted: true,
		steps: make(map[stepKey]*stepRow, len(steps)),
	}
	if s.CompensationStartedAt != nil {
		in.compStarted = *s.CompensationStartedAt
	}
	for _, st := range steps {
		in.steps[stepKey{st.Name, Phase(st.Phase)}] = &stepRow{
			group: int(st.GroupIndex), status: StepStatus(st.Status), attempts: int(st.Attempts),
			lastError: st.LastError, permanent: st.Permanent, started: st.StartedAt,
		}
	}
	return in, nil
}
