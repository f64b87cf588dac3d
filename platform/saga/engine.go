package saga

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/internal/warm"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/saga/sagadb"
)

// Defaults of Options.
const (
	DefaultWorkers           = 64
	DefaultLeaseTTL          = 3 * time.Second
	DefaultPollInterval      = 500 * time.Millisecond
	DefaultDeadline          = 30 * time.Second
	DefaultStepTimeout       = 5 * time.Second
	DefaultCompensationLimit = 5 * time.Minute
	DefaultInlineRetryWait   = time.Second
	DefaultStatsInterval     = 5 * time.Second
)

// DefaultRetry is the action retry policy when neither the step nor Options
// name one: until the saga deadline, 100 ms, 200 ms, … then 1 s apart
// (jittered).
var DefaultRetry = RetryPolicy{MaxAttempts: 3, MaxElapsed: UntilDeadline, Backoff: backoff.Policy{Min: 100 * time.Millisecond, Max: time.Second}}

// DefaultCompensationRetry is the backoff of compensations (and of pivot
// steps past their retry budget): from 100 ms doubling to 30 s.
var DefaultCompensationRetry = backoff.Policy{Min: 100 * time.Millisecond, Max: 30 * time.Second}

// Options configure an Engine. Zero values take the defaults.
type Options struct {
	// Owner names this replica in leases and audit rows; it must be unique
	// among the replicas sharing the database (pod name, host:pid). Required.
	Owner string
	// Workers bounds the sagas this replica executes at once.
	Workers int
	// LeaseTTL is how long a claim lasts without renewal. The replica
	// renews all its leases with one statement every LeaseTTL/3 while it
	// works, so a crashed replica's sagas are taken over between 2/3
	// LeaseTTL and LeaseTTL, plus up to PollInterval, after the crash: 2 to
	// 3.5 s with the defaults.
	// A replica that could not renew a lease for 5/6 LeaseTTL stops the
	// saga's execution, cancelling its call in flight, before another
	// replica can claim it: a slow replica never calls a step while
	// another runs the same saga.
	LeaseTTL time.Duration
	// PollInterval is how often the recovery loop looks for sagas whose
	// lease expired or whose persisted backoff is over. New sagas do not
	// wait for it: the replica that starts a saga runs it at once.
	PollInterval time.Duration
	// Deadline is the overall saga deadline unless the Definition sets one.
	Deadline time.Duration
	// StepTimeout bounds each step call unless the Step sets one.
	StepTimeout time.Duration
	// Retry is the action retry policy unless the Step sets one.
	Retry RetryPolicy
	// CompensationRetry is the backoff between compensation attempts.
	CompensationRetry backoff.Policy
	// CompensationLimit is how long a saga may try to compensate (from the
	// moment it began to, or from an operator's retry) before it is PARKED.
	CompensationLimit time.Duration
	// InlineRetryWait is the longest backoff waited in memory, holding the
	// lease and a worker; longer waits are persisted (next_run_at) and the
	// saga is released to the recovery loop.
	InlineRetryWait time.Duration
	// StatsInterval is how often saga_pending_count and saga_parked_count
	// are sampled from the database.
	StatsInterval time.Duration
	// Authorize, when set, is asked before every action call whether the
	// user who started the saga (x.StartedBy) may still do it; an error
	// fails the step and the saga compensates (that step too if an earlier
	// attempt of it has an unknown outcome). Once a pivot step has been
	// called it is no longer asked: the saga can then only complete.
	// Compensations are never refused: undoing must stay possible.
	Authorize func(ctx context.Context, x *Execution) error
	// OnFinish, when set, is called after this replica stored a saga's
	// outcome: COMPLETED, COMPENSATED or PARKED. It must not block.
	OnFinish func(sagaID uuid.UUID, state State)
	// Logger receives the engine's logs (nil: discarded).
	Logger *slog.Logger
	// Registerer receives the saga_* metrics (nil: not registered).
	Registerer prometheus.Registerer
	// TracerProvider makes the step spans (nil: the global provider).
	TracerProvider trace.TracerProvider
}

func (o *Options) setDefaults() {
	positiveOr(&o.Workers, DefaultWorkers)
	positiveOr(&o.LeaseTTL, DefaultLeaseTTL)
	positiveOr(&o.PollInterval, DefaultPollInterval)
	positiveOr(&o.Deadline, DefaultDeadline)
	positiveOr(&o.StepTimeout, DefaultStepTimeout)
	if o.Retry.isZero() {
		o.Retry = DefaultRetry
	}
	o.Retry.MaxAttempts = max(o.Retry.MaxAttempts, 1)
	if o.CompensationRetry == (backoff.Policy{}) {
		o.CompensationRetry = DefaultCompensationRetry
	}
	positiveOr(&o.CompensationLimit, DefaultCompensationLimit)
	positiveOr(&o.InlineRetryWait, DefaultInlineRetryWait)
	positiveOr(&o.StatsInterval, DefaultStatsInterval)
	o.Logger = logs.OrDiscard(o.Logger)
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.TracerProvider == nil {
		o.TracerProvider = otel.GetTracerProvider()
	}
}

// positiveOr sets *v to def unless it is positive: zero or a negative
// option means the default.
func positiveOr[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

var (
	// ErrNotFound is returned for a saga id that does not exist.
	ErrNotFound = errors.New("saga: not found")
	// ErrIllegalState is returned by Retry and Abort for a saga whose state
	// does not allow the operation.
	ErrIllegalState = errors.New("saga: operation not allowed in this state")
	// ErrNotRunning is returned by Start and ExecuteStarted after Run returned.
	ErrNotRunning = errors.New("saga: engine is not running")
	// ErrUnknownType is returned for a saga type without a Definition.
	ErrUnknownType = errors.New("saga: unknown saga type")
)

// Engine runs saga definitions durably on PostgreSQL (see the package
// documentation). Its methods are safe for concurrent use.
type Engine struct {
	db DB
	q  *sagadb.Queries
	// grouped is the executions' writes' Queries: on a pool,
	// group-committed with those of the other executions (see flushes);
	// q itself otherwise.
	grouped *sagadb.Queries
	// flushes is held (shared) by every grouped write and (exclusively)
	// by the lease renewal: a batch of transitions holds the rows of
	// several sagas until it commits, and the renewal's one statement
	// locks all of them in its own order, so the two would deadlock.
	flushes sync.RWMutex
	keys    *keyring.Keyring
	opts    Options
	defs    map[string]*Definition
	m       *metrics
	tracer  trace.Tracer
	log     *slog.Logger

	slots chan struct{} // worker semaphore
	// runners run the executions on goroutines that stay a while between
	// them, keeping their grown stacks.
	runners *warm.Pool

	// epoch is the origin of leaseClock, a monotonic reading.
	epoch time.Time

	mu        sync.Mutex
	runCtx    context.Context // parent of every execution; cancelled when Run ends
	runCancel context.CancelFunc
	held      map[uuid.UUID]*execution
	running   bool           // from New until Run ends
	ran       bool           // Run was called
	wg        sync.WaitGroup // executions
	kick      chan struct{}  // wakes the recovery loop
}

// New returns an engine for defs on db (the service's pool), sealing saga
// contexts with keys. It validates the definitions and registers the
// metrics. Start works from now on, but leases are only renewed, crashed
// replicas' sagas only recovered, and executions only stopped by Run: call
// it.
func New(db DB, keys *keyring.Keyring, opts Options, defs ...*Definition) (*Engine, error) {
	if db == nil || keys == nil {
		return nil, errors.New("saga: New needs a database and a keyring")
	}
	if strings.TrimSpace(opts.Owner) == "" {
		return nil, errors.New("saga: Options.Owner (the replica's unique name) is required")
	}
	opts.setDefaults()
	e := &Engine{
		db: db, q: sagadb.New(db), keys: keys, opts: opts,
		defs:    make(map[string]*Definition, len(defs)),
		tracer:  opts.TracerProvider.Tracer("github.com/goodgo/goodgo/platform/saga"),
		log:     opts.Logger.With("component", "saga", "owner", opts.Owner),
		slots:   make(chan struct{}, opts.Workers),
		runners: warm.New(time.Second),
		held:    map[uuid.UUID]*execution{},
		kick:    make(chan struct{}, 1),
		epoch:   time.Now(),
	}
	// Only a pool: a group sends its batches concurrently with the
	// engine's other statements, which a connection or a transaction
	// does not allow.
	if pool, ok := db.(*pgxpool.Pool); ok {
		// A write older than the lease is moot: the fence stops its
		// execution by then.
		g, err := postgres.NewGroup(pool, postgres.GroupOptions{Timeout: opts.LeaseTTL})
		if err != nil {
			return nil, fmt.Errorf("saga: %w", err)
		}
		e.grouped = sagadb.New(g)
	} else {
		e.grouped = e.q
	}
	e.runCtx, e.runCancel = context.WithCancel(context.Background())
	e.running = true
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	e.m = m
	for _, d := range defs {
		if err := d.validate(); err != nil {
			return nil, err
		}
		if _, dup := e.defs[d.Name]; dup {
			return nil, fmt.Errorf("saga: definition %s given twice", d.Name)
		}
		e.defs[d.Name] = d
		m.init(d)
	}
	return e, nil
}

// Run executes sagas until ctx is cancelled: the recovery loop claims due
// sagas whose lease expired (crashed or stopped replicas, persisted
// backoffs), a renewer keeps this replica's leases alive, and the pending
// and parked gauges are sampled. Sagas started on this replica with Start
// run as soon as they are inserted, without waiting for the loop.
//
// When ctx is cancelled Run stops every execution (their in-flight calls are
// cancelled), waits for them, gives their leases up so that another replica
// resumes them at once, and returns nil. Run may be called once; the
// engine cannot start sagas after it returned.
func (e *Engine) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.ran {
		e.mu.Unlock()
		return errors.New("saga: Run may be called once")
	}
	e.ran = true
	runCtx, cancel := e.runCtx, e.runCancel
	e.mu.Unlock()

	var loops sync.WaitGroup
	loops.Go(func() { e.recoveryLoop(runCtx) })
	loops.Go(func() { e.renewLoop(runCtx) })
	loops.Go(func() { e.fenceLoop(runCtx) })
	loops.Go(func() { e.statsLoop(runCtx) })

	<-ctx.Done()
	e.mu.Lock()
	e.running = false
	held := make([]uuid.UUID, 0, len(e.held))
	for id := range e.held {
		held = append(held, id)
	}
	e.mu.Unlock()
	cancel()
	loops.Wait()
	e.wg.Wait()
	if len(held) > 0 {
		rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer rcancel()
		if err := e.q.ReleaseLeases(rctx, sagadb.ReleaseLeasesParams{Owner: e.opts.Owner, Ids: held}); err != nil {
			e.log.Warn("saga: release leases at stop", "error", err, "sagas", len(held))
		}
	}
	e.log.Info("saga engine stopped", "released", len(held))
	return nil
}

// StartRequest describes a saga to start.
type StartRequest struct {
	// Type names the Definition.
	Type string
	// CorrelationID is the business key: one saga per type and key.
	CorrelationID string
	// StartedBy is the user on whose behalf the saga acts (audited, and
	// given to Options.Authorize).
	StartedBy string
	// Data is the saga context, sealed (AES-256-GCM, aad = saga id) before
	// it is stored and given back to every step as Execution.Data.
	Data []byte
}

// StartResult names the saga of a StartRequest.
type StartResult struct {
	SagaID uuid.UUID
	// Created is false when a saga of the same type and correlation id
	// already existed: it is returned and nothing is started.
	Created bool
	// in is the saga StartTx created, as stored: ExecuteStarted runs it
	// without reading it back.
	in *instance
}

// Start creates the saga of req unless one exists for its type and
// correlation id, and executes it on this replica right away: the insert
// carries the first step's "running" record, and a worker starts the call
// as soon as it commits. The trace context of ctx is stored with the saga,
// so every step span continues that trace. Start waits for a free worker
// (ctx bounds the wait) and returns once the saga is stored, not when it
// ends. It fails with ErrNotRunning once Run has returned.
func (e *Engine) Start(ctx context.Context, req StartRequest) (StartResult, error) {
	in, err := e.newInstance(ctx, req)
	if err != nil {
		return StartResult{}, err
	}
	if err := e.acquire(ctx); err != nil {
		return StartResult{}, err
	}
	x, err := e.begin(in)
	if err != nil {
		e.release()
		return StartResult{}, err
	}
	inserted := make(chan error, 1)
	x.inserted = inserted
	e.runners.Go(x.run) // the execution belongs to the engine, not to the caller's request
	select {
	case err = <-inserted:
	case <-ctx.Done():
		// The execution goes on; the saga may or may not be stored.
		return StartResult{}, ctx.Err()
	}
	switch {
	case err == nil:
		return StartResult{SagaID: in.id, Created: true}, nil
	case errors.Is(err, errDuplicate):
		s, ferr := e.q.FindSagaByCorrelation(ctx, sagadb.FindSagaByCorrelationParams{SagaType: req.Type, CorrelationID: req.CorrelationID})
		if ferr != nil {
			return StartResult{}, fmt.Errorf("saga: find existing %s %s: %w", req.Type, req.CorrelationID, ferr)
		}
		return StartResult{SagaID: s.ID}, nil
	default:
		return StartResult{}, err
	}
}

// StartTx creates the saga of req within the caller's transaction tx (for
// example together with the inbox record of the event that starts it),
// leased to this replica. Like Start's, the insert records the first
// step's call as started. Nothing runs until the caller, after committing,
// calls ExecuteStarted with the result; a saga whose execution never comes
// is picked up by the recovery loop once its lease expires, which calls
// that step again (same idempotency key), as after any crash between a
// record and its call. A saga that already exists for the type and
// correlation id is returned with Created false. The trace context of ctx
// is stored with the saga.
func (e *Engine) StartTx(ctx context.Context, tx pgx.Tx, req StartRequest) (StartResult, error) {
	in, err := e.newInstance(ctx, req)
	if err != nil {
		return StartResult{}, err
	}
	e.prestart(ctx, in)
	in.leaseSent = e.leaseClock()
	err = in.flush(ctx, sagadb.New(tx), e.opts.Owner, e.opts.LeaseTTL, flushOpts{})
	switch {
	case err == nil:
		return StartResult{SagaID: in.id, Created: true, in: in}, nil
	case errors.Is(err, errDuplicate):
		s, ferr := sagadb.New(tx).FindSagaByCorrelation(ctx, sagadb.FindSagaByCorrelationParams{SagaType: req.Type, CorrelationID: req.CorrelationID})
		if ferr != nil {
			return StartResult{}, fmt.Errorf("saga: find existing %s %s: %w", req.Type, req.CorrelationID, ferr)
		}
		return StartResult{SagaID: s.ID}, nil
	default:
		return StartResult{}, err
	}
}

// execute runs saga id on this replica if this replica holds its lease (a
// saga from StartTx) or can claim it (due, lease expired). It waits for a
// free worker (ctx bounds the wait) and returns once the execution has
// begun; a saga that is held elsewhere, finished or already executing here
// is left alone and execute returns nil.
func (e *Engine) execute(ctx context.Context, id uuid.UUID) error {
	if err := e.acquire(ctx); err != nil {
		return err
	}
	return e.executeHeld(ctx, id)
}

// ExecuteStarted runs the saga r that StartTx created, once its
// transaction has committed: the execution begins from the saga as StartTx
// stored it, without reading it back (three round trips fewer per saga),
// and calls the first step the insert recorded without another write
// while the insert's lease has time left (the margin the fence loop
// keeps). A saga StartTx did not create (Created false) is left alone: its
// creator executes it, or the recovery loop once its lease expires. Should
// the lease have run short meanwhile (this waited for a worker), the
// execution records a new attempt first, as for any other call: that write,
// guarded by version and lease owner, matches nothing if a replica claimed
// the saga since, and the execution stops, as one whose lease was lost
// does.
func (e *Engine) ExecuteStarted(ctx context.Context, r StartResult) error {
	if r.in == nil {
		if !r.Created {
			return nil
		}
		return e.execute(ctx, r.SagaID)
	}
	if err := e.acquire(ctx); err != nil {
		return err
	}
	if e.holds(r.SagaID) {
		// The recovery loop claimed it first (its lease expired while
		// this waited for a worker): it runs from what was stored.
		e.release()
		return nil
	}
	x, err := e.begin(r.in)
	if err != nil {
		e.release()
		return err
	}
	// The insert's lease, from when it was sent: the execution may call
	// the steps the insert recorded only while it holds (and the fence
	// loop watches it from now on).
	x.extendLease(r.in.leaseSent)
	e.runners.Go(x.run) // the execution belongs to the engine, not to the caller's request
	return nil
}

// prestart records, for StartTx's insert to store, what the execution's
// first write before a call would: the groups without actions passed (their
// steps succeeded as no-ops, the cursor past them) and the action calls of
// the first group that has some started (attempt 1, RUNNING, audited). The
// execution after the commit then calls them without writing first: one
// transaction fewer per saga. It records nothing when the execution would
// not call them now (the deadline passed, Authorize refuses one): the
// execution decides those as usual.
func (e *Engine) prestart(ctx context.Context, in *instance) {
	if !time.Now().Before(in.deadline) {
		return
	}
	for gi, g := range in.def.Steps {
		var calls []*Step
		for i := range g {
			s := &g[i]
			if s.Action == nil {
				continue
			}
			if e.opts.Authorize != nil && e.opts.Authorize(ctx, in.execution(s.Name, PhaseAction, 1)) != nil {
				return
			}
			calls = append(calls, s)
		}
		if len(calls) == 0 {
			continue
		}
		for pi := range gi + 1 {
			in.markNoops(pi, in.def.Steps[pi], e.opts.Owner)
		}
		in.cursor = gi
		for _, s := range calls {
			r := in.row(s.Name, PhaseAction, gi)
			r.status, r.attempts, r.dirty, r.prestarted = StepRunning, 1, true, true
			in.audit(e.opts.Owner, "step.started", map[string]any{"step": s.Name, "phase": PhaseAction, "attempt": r.attempts})
		}
		return
	}
}

// executeHeld is execute with a worker slot already taken; it frees the
// slot unless an execution took it over.
func (e *Engine) executeHeld(ctx context.Context, id uuid.UUID) error {
	s, err := e.q.GetSaga(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		e.release()
		return ErrNotFound
	}
	if err != nil {
		e.release()
		return fmt.Errorf("saga: read %s: %w", id, err)
	}
	if !State(s.State).Active() {
		e.release()
		return nil
	}
	if s.LeaseOwner == e.opts.Owner {
		if e.holds(id) {
			e.release()
			return nil // already executing here
		}
	} else {
		// Claiming succeeds only when the lease is free (an operator's
		// action revoked it, or it expired); an execution of it still
		// running here is then stopped by begin.
		if _, err := e.q.ClaimSaga(ctx, sagadb.ClaimSagaParams{ID: id, Owner: e.opts.Owner, LeaseMs: e.opts.LeaseTTL.Milliseconds()}); err != nil {
			e.release()
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // held by another replica, or not due yet
			}
			return fmt.Errorf("saga: claim %s: %w", id, err)
		}
		e.m.claims.Inc()
	}
	in, err := e.load(ctx, []uuid.UUID{id})
	if err != nil || len(in) == 0 {
		e.release()
		return err
	}
	x, err := e.begin(in[0])
	if err != nil {
		e.release()
		return err
	}
	e.runners.Go(x.run) // the execution belongs to the engine, not to the caller's request
	return nil
}

// newInstance builds the in-memory saga of req, its context sealed.
func (e *Engine) newInstance(ctx context.Context, req StartRequest) (*instance, error) {
	def, ok := e.defs[req.Type]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownType, req.Type)
	}
	if req.CorrelationID == "" {
		return nil, errors.New("saga: StartRequest.CorrelationID is required")
	}
	id, err := uuid.NewV7() // time-ordered: inserts stay at the right edge of the index
	if err != nil {
		return nil, fmt.Errorf("saga: new id: %w", err)
	}
	keyID, sealed, err := e.keys.Seal(req.Data, id[:])
	if err != nil {
		return nil, fmt.Errorf("saga: seal context: %w", err)
	}
	carrier := propagation.MapCarrier{}
	// The W3C propagator itself, not the global one: what is stored must be
	// readable by every replica whatever its global configuration.
	propagation.TraceContext{}.Inject(ctx, carrier)
	deadline := def.Deadline
	if deadline <= 0 {
		deadline = e.opts.Deadline
	}
	now := time.Now()
	in := &instance{
		id: id, def: def, correlationID: req.CorrelationID, startedBy: req.StartedBy,
		data: req.Data, keyID: keyID, sealed: sealed,
		traceparent: carrier.Get("traceparent"), tracestate: carrier.Get("tracestate"),
		state: StateRunning, createdAt: now, deadline: now.Add(deadline),
		steps: map[stepKey]*stepRow{},
	}
	in.audit(in.startedBy, "saga.started", map[string]any{"correlation_id": in.correlationID, "owner": e.opts.Owner})
	return in, nil
}

// load reads sagas and their steps and rebuilds their instances. Sagas of
// unknown types or with contexts this replica cannot open are logged and
// skipped (their lease runs out and another replica may have the key).
func (e *Engine) load(ctx context.Context, ids []uuid.UUID) ([]*instance, error) {
	rows, err := e.q.GetSagas(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("saga: read claimed sagas: %w", err)
	}
	steps, err := e.q.ListSagaSteps(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("saga: read claimed steps: %w", err)
	}
	bySaga := map[uuid.UUID][]sagadb.SagaStep{}
	for _, s := range steps {
		bySaga[s.SagaID] = append(bySaga[s.SagaID], s)
	}
	out := make([]*instance, 0, len(rows))
	for _, r := range rows {
		def, ok := e.defs[r.SagaType]
		if !ok {
			e.log.Error("saga: claimed a saga of an unknown type; leaving it", "saga_id", r.ID, "saga_type", r.SagaType)
			continue
		}
		in, err := fromRows(r, bySaga[r.ID], def, e.keys.Open)
		if err != nil {
			e.log.Error("saga: cannot load claimed saga; leaving it", "saga_id", r.ID, "error", err)
			continue
		}
		out = append(out, in)
	}
	return out, nil
}

func (e *Engine) isRunning() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.running
}

// holds reports whether this replica is executing saga id.
func (e *Engine) holds(id uuid.UUID) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, ok := e.held[id]
	return ok
}

// tryAcquire takes a worker slot if one is free.
func (e *Engine) tryAcquire() bool {
	if !e.isRunning() {
		return false
	}
	select {
	case e.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

// acquire takes a worker slot, waiting until one is free or ctx is done.
func (e *Engine) acquire(ctx context.Context) error {
	if !e.isRunning() {
		return ErrNotRunning
	}
	select {
	case e.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (e *Engine) release() { <-e.slots }

// begin registers an execution of in, holding a worker slot already taken.
// A saga already executing here (its lease expired under a slow renewal and
// this replica claimed it again) is stopped first: the new execution waits
// for it to end.
func (e *Engine) begin(in *instance) (*execution, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.running {
		return nil, ErrNotRunning
	}
	ctx, cancel := context.WithCancelCause(e.runCtx)
	x := &execution{e: e, in: in, ctx: ctx, cancel: cancel, done: make(chan struct{})}
	if prev, ok := e.held[in.id]; ok {
		prev.cancel(errLost)
		x.after = prev.done
	}
	e.held[in.id] = x
	e.wg.Add(1)
	return x, nil
}

// end unregisters x and frees its worker slot.
func (e *Engine) end(x *execution) {
	e.mu.Lock()
	if e.held[x.in.id] == x {
		delete(e.held, x.in.id)
	}
	e.mu.Unlock()
	close(x.done)
	e.release()
	e.wg.Done()
}

// wake asks the recovery loop to look for due sagas now.
func (e *Engine) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// recoveryLoop claims due sagas whose lease expired, as many as there are
// free workers, every PollInterval (or at once when woken).
func (e *Engine) recoveryLoop(ctx context.Context) {
	every(ctx, e.opts.PollInterval, e.kick, func() {
		for ctx.Err() == nil {
			n, err := e.claimDue(ctx)
			if err != nil {
				if ctx.Err() == nil {
					e.log.Warn("saga: claim due sagas", "error", err)
				}
				return
			}
			if n == 0 {
				return
			}
		}
	})
}

// every calls fn every d, and at once when wake fires (a nil wake never
// does), until ctx is done.
func every(ctx context.Context, d time.Duration, wake <-chan struct{}, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		fn()
	}
}

// claimDue claims and starts up to the number of free workers; it returns
// how many it started.
func (e *Engine) claimDue(ctx context.Context) (int, error) {
	free := 0
	for free < cap(e.slots) {
		select {
		case e.slots <- struct{}{}:
			free++
			continue
		default:
		}
		break
	}
	if free == 0 {
		return 0, nil
	}
	ids, err := e.q.ClaimDueSagas(ctx, sagadb.ClaimDueSagasParams{
		MaxSagas: int32(free), Owner: e.opts.Owner, LeaseMs: e.opts.LeaseTTL.Milliseconds(),
	})
	var ins []*instance
	if err == nil && len(ids) > 0 {
		e.m.claims.Add(float64(len(ids)))
		ins, err = e.load(ctx, ids)
	}
	started := 0
	for _, in := range ins {
		x, berr := e.begin(in)
		if berr != nil {
			break
		}
		started++
		e.log.Info("saga claimed", "saga_id", in.id, "saga_type", in.def.Name, "state", in.state)
		e.runners.Go(x.run)
	}
	for range free - started {
		e.release()
	}
	return started, err
}

// renewLoop extends this replica's leases every LeaseTTL/3, all of them in
// one statement, and stops the executions whose lease was lost. A renewal
// that takes longer than LeaseTTL/2 is given up (the next one follows at
// once): fenceLoop decides when too long has passed without one.
func (e *Engine) renewLoop(ctx context.Context) {
	every(ctx, e.opts.LeaseTTL/3, nil, func() { e.renewLeases(ctx) })
}

// renewLeases is one renewal of renewLoop.
func (e *Engine) renewLeases(ctx context.Context) {
	e.mu.Lock()
	ids := make([]uuid.UUID, 0, len(e.held))
	for id, x := range e.held {
		if x.stored.Load() {
			ids = append(ids, id)
		}
	}
	e.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	sent := e.leaseClock()
	rctx, cancel := context.WithTimeout(ctx, e.opts.LeaseTTL/2)
	e.flushes.Lock()
	kept, err := e.q.RenewLeases(rctx, sagadb.RenewLeasesParams{LeaseMs: e.opts.LeaseTTL.Milliseconds(), Owner: e.opts.Owner, Ids: ids})
	e.flushes.Unlock()
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("saga: renew leases", "error", err, "sagas", len(ids))
		}
		return
	}
	ok := make(map[uuid.UUID]bool, len(kept))
	for _, id := range kept {
		ok[id] = true
	}
	e.mu.Lock()
	for _, id := range ids {
		x := e.held[id]
		switch {
		case x == nil:
		case ok[id]:
			// The database extended the lease after sent: it lasts
			// at least until sent + LeaseTTL.
			x.extendLease(sent)
		case !x.finishing.Load():
			x.cancel(errLost)
		}
	}
	e.mu.Unlock()
}

// errLeaseExpired stops an execution whose lease this replica could not
// renew in time: another replica may claim the saga any moment.
var errLeaseExpired = fmt.Errorf("%w: not renewed in time", errLost)

// fenceLoop stops, every LeaseTTL/12, the executions whose lease may run
// out within LeaseTTL/6 by this replica's clock (see execution.leaseUntil):
// their renewals failed or hang (database unreachable or slow, the process
// starved). Their calls in flight are cancelled before another replica can
// claim the saga, which it does only once the lease has expired by the
// database's clock, never earlier than leaseUntil. The saga's row is not
// touched; its lease runs out and a replica, maybe this one again, resumes
// it from what was stored.
func (e *Engine) fenceLoop(ctx context.Context) {
	every(ctx, max(e.opts.LeaseTTL/12, time.Millisecond), nil, func() {
		limit := e.leaseClock() + e.opts.LeaseTTL/6
		e.mu.Lock()
		defer e.mu.Unlock()
		for _, x := range e.held {
			until := x.leaseUntil.Load()
			if until != 0 && time.Duration(until) <= limit && !x.finishing.Load() && x.ctx.Err() == nil {
				x.cancel(errLeaseExpired)
			}
		}
	})
}

// leaseClock is a monotonic clock for lease deadlines: the time since the
// engine was created.
func (e *Engine) leaseClock() time.Duration { return time.Since(e.epoch) }

// statsLoop samples saga_pending_count and saga_parked_count.
func (e *Engine) statsLoop(ctx context.Context) {
	sample := func() {
		c, err := e.q.CountSagasByState(ctx)
		if err == nil {
			e.m.pending.Set(float64(c.Pending))
			e.m.parked.Set(float64(c.Parked))
		} else if ctx.Err() == nil {
			e.log.Warn("saga: sample saga counts", "error", err)
		}
	}
	sample()
	every(ctx, e.opts.StatsInterval, nil, sample)
}

// atomicBool is sync/atomic.Bool, named for the execution struct.
type atomicBool = atomic.Bool
