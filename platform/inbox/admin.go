package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox/inboxdb"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/telemetry"
)

// Errors of Admin, for the transport to map (NotFound, FailedPrecondition,
// InvalidArgument).
var (
	// ErrParkedNotFound: the consumer never parked the event.
	ErrParkedNotFound = errors.New("inbox: no such parked event")
	// ErrNotParked: the event was resolved (replayed or discarded) already.
	ErrNotParked = errors.New("inbox: the event is not parked (resolved already)")
	// ErrParkedBehind: an older event of the same aggregate is still
	// parked; it must be replayed or discarded first, or the aggregate's
	// order would break.
	ErrParkedBehind = errors.New("inbox: the event is parked behind an older event of its aggregate")
	// ErrReasonRequired: a discard needs a reason.
	ErrReasonRequired = errors.New("inbox: a reason is required")
)

// Resolutions of a parked event (inbox_parked.resolution).
const (
	ResolutionReplayed  = "replayed"
	ResolutionDiscarded = "discarded"
)

// ResultFailed is a replay that failed again: the event stays parked with
// the new error.
const ResultFailed = "failed"

// Audit actions and outcomes (msg "audit" log lines and
// inbox_admin_actions_total).
const (
	ActionReplay  = "replay"
	ActionDiscard = "discard"
	OutcomeOK     = "ok"
	OutcomeFailed = "failed"
	OutcomeDenied = "refused"
)

// MaxReason bounds an operator's reason, in bytes.
const MaxReason = 500

// Parked is one parked event as an operator sees it: everything but the
// payload.
type Parked struct {
	ID               int64
	Consumer         string
	EventID          uuid.UUID
	EventType        string
	AggregateType    string
	AggregateID      string
	AggregateVersion int64 // from the headers; 0 when absent
	Topic            string
	Partition        int
	Offset           int64
	Error            string
	ParkedAt         time.Time
	ResolvedAt       *time.Time
	Resolution       string // "", ResolutionReplayed, ResolutionDiscarded
	ResolvedBy       string
	ResolutionReason string
	ReplayAttempts   int
}

// ListFilter selects parked events for Admin.List.
type ListFilter struct {
	// AggregateType and AggregateID, when set, select one aggregate type
	// (and one aggregate of it).
	AggregateType, AggregateID string
	// IncludeResolved lists replayed and discarded events too.
	IncludeResolved bool
	// After is the ID of the last event of the previous page (0: from the
	// start).
	After int64
	// Limit is the most events returned (1 to 1000).
	Limit int
}

// ReplayResult is the outcome of replaying one parked event.
type ReplayResult struct {
	EventID uuid.UUID
	// Result is ResultApplied, ResultStale (older than the applied version:
	// recorded, not applied), ResultDuplicate (processed before), or
	// ResultFailed (still parked, Err says why).
	Result string
	Err    error
}

// Admin lets operators list, replay and discard the parked events of one
// consumer (ParkedEventService in each consuming binary). It shares the
// consumer's database, handler and keys: a replay applies an event exactly
// as the Consumer would have, in one transaction with its inbox record,
// its applied version and its resolution. Safe for concurrent use; the
// event's row is locked while it is resolved, so two operators never
// resolve one event twice.
type Admin struct {
	consumer string
	pool     *pgxpool.Pool
	handler  Handler
	keys     *keyring.Keyring
	log      *slog.Logger
	actions  *prometheus.CounterVec
}

// AdminOptions are the admin's collaborators.
type AdminOptions struct {
	// Keys open the sealed payloads (the consumer's Options.Keys): required.
	Keys *keyring.Keyring
	// Logger receives the audit lines; nil discards them.
	Logger *slog.Logger
	// Registerer receives inbox_admin_actions_total; nil registers nothing.
	Registerer prometheus.Registerer
}

// NewAdmin returns the admin of consumer's parked events in pool's
// database; handler is the consumer's Handler.
func NewAdmin(consumer string, pool *pgxpool.Pool, handler Handler, opts AdminOptions) (*Admin, error) {
	switch {
	case consumer == "":
		return nil, errors.New("inbox: admin: no consumer")
	case pool == nil || handler == nil:
		return nil, errors.New("inbox: admin: nil pool or handler")
	case opts.Keys == nil:
		return nil, ErrNoKeys
	}
	opts.Logger = logs.OrDiscard(opts.Logger)
	actions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "inbox_admin_actions_total",
		Help: "Operators' actions on parked inbox events, by action (replay, discard) and outcome (ok, failed, refused).",
	}, []string{"consumer", "action", "outcome"})
	if opts.Registerer != nil {
		var err error
		if actions, err = telemetry.Register(opts.Registerer, "inbox", actions); err != nil {
			return nil, err
		}
	}
	return &Admin{
		consumer: consumer, pool: pool, handler: handler, keys: opts.Keys,
		log: opts.Logger.With("consumer", consumer), actions: actions,
	}, nil
}

// Consumer is the consumer whose parked events a manages.
func (a *Admin) Consumer() string { return a.consumer }

// List returns a page of parked events in the order they were parked.
func (a *Admin) List(ctx context.Context, f ListFilter) ([]Parked, error) {
	if f.Limit < 1 || f.Limit > 1000 {
		return nil, fmt.Errorf("inbox: admin: limit %d out of 1..1000", f.Limit)
	}
	rows, err := inboxdb.New(a.pool).ListParked(ctx, inboxdb.ListParkedParams{
		Consumer: a.consumer, After: f.After, IncludeResolved: f.IncludeResolved,
		AggregateType: f.AggregateType, AggregateID: f.AggregateID, PageSize: int32(f.Limit),
	})
	if err != nil {
		return nil, fmt.Errorf("inbox: list parked: %w", err)
	}
	out := make([]Parked, len(rows))
	for i, r := range rows {
		out[i] = Parked{
			ID: r.ID, Consumer: r.Consumer, EventID: r.EventID, EventType: r.EventType,
			AggregateType: r.AggregateType, AggregateID: r.AggregateID, AggregateVersion: headerVersion(r.Headers),
			Topic: r.Topic, Partition: int(r.KafkaPartition), Offset: r.KafkaOffset, Error: r.Error,
			ParkedAt: r.ParkedAt, ResolvedAt: r.ResolvedAt, Resolution: r.Resolution, ResolvedBy: r.ResolvedBy,
			ResolutionReason: r.ResolutionReason, ReplayAttempts: int(r.ReplayAttempts),
		}
	}
	return out, nil
}

// Replay applies the parked event id now, as the consumer would have (a
// redelivery: recorded in the inbox, skipped as stale below the applied
// version, else handled; its AfterCommit functions run after the commit),
// and marks it replayed by actor. Then it replays, in order, the events of
// the same aggregate that were parked behind it, stopping at the first
// that fails (it stays parked with its new error and
// replay_attempts + 1). The results list the event and those behind it.
//
// An event parked behind an older unresolved one is refused
// (ErrParkedBehind): replay or discard that one first. A resolved event is
// ErrNotParked, an unknown one ErrParkedNotFound. Every replayed event is
// audited (a "audit" log line with actor, action, event, reason, outcome)
// and counted in inbox_admin_actions_total.
//
// An event of the aggregate that the consumer parks behind the last one
// while that one is being replayed stays parked (the consumer saw its
// predecessor unresolved); it is listed, and replaying it applies it.
func (a *Admin) Replay(ctx context.Context, id uuid.UUID, actor, reason string) ([]ReplayResult, error) {
	if len(reason) > MaxReason {
		return nil, fmt.Errorf("%w: at most %d bytes", ErrReasonTooLong, MaxReason)
	}
	res, aggType, aggID, err := a.replayOne(ctx, id, actor, reason, true)
	if err != nil {
		a.audit(ctx, ActionReplay, id, actor, reason, OutcomeDenied, err)
		return nil, err
	}
	results := []ReplayResult{res}
	for res.Result != ResultFailed {
		next, err := inboxdb.New(a.pool).NextParked(ctx, inboxdb.NextParkedParams{Consumer: a.consumer, AggregateType: aggType, AggregateID: aggID})
		if errors.Is(err, pgx.ErrNoRows) {
			break
		}
		if err != nil {
			return results, fmt.Errorf("inbox: replay: next parked event of %s %s: %w", aggType, aggID, err)
		}
		res, _, _, err = a.replayOne(ctx, next, actor, "behind "+id.String()+joinReason(reason), false)
		if err != nil {
			// Another operator resolved it meanwhile: theirs to report.
			if errors.Is(err, ErrNotParked) || errors.Is(err, ErrParkedBehind) {
				break
			}
			return results, err
		}
		results = append(results, res)
	}
	return results, nil
}

// ErrReasonTooLong: the reason exceeds MaxReason.
var ErrReasonTooLong = errors.New("inbox: reason too long")

func joinReason(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}

// replayOne replays one parked event in its own transaction; head reports
// the event the operator named (audited with their reason). It returns the
// aggregate of the event, for the events behind it.
func (a *Admin) replayOne(ctx context.Context, id uuid.UUID, actor, reason string, head bool) (ReplayResult, string, string, error) {
	res := ReplayResult{EventID: id}
	tx, err := postgres.Begin(ctx, a.pool)
	if err != nil {
		return res, "", "", fmt.Errorf("inbox: replay: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	q := inboxdb.New(tx)
	row, err := a.lock(ctx, q, id)
	if err != nil {
		return res, "", "", err
	}
	ahead, err := q.ParkedAhead(ctx, inboxdb.ParkedAheadParams{Consumer: a.consumer, AggregateType: row.AggregateType, AggregateID: row.AggregateID, ID: row.ID})
	switch {
	case err == nil:
		return res, "", "", fmt.Errorf("%w: replay or discard %s first", ErrParkedBehind, ahead)
	case !errors.Is(err, pgx.ErrNoRows):
		return res, "", "", fmt.Errorf("inbox: replay: %w", err)
	}

	result, after, applyErr := a.apply(ctx, tx, q, row)
	if applyErr == nil {
		if _, err := q.ResolveParked(ctx, inboxdb.ResolveParkedParams{
			Resolution: ResolutionReplayed, ResolvedBy: actor, ResolutionReason: reason, ID: row.ID,
		}); err != nil {
			return res, "", "", fmt.Errorf("inbox: replay: resolve: %w", err)
		}
		if err := tx.Commit(ctx); err != nil {
			return res, "", "", fmt.Errorf("inbox: replay: commit: %w", err)
		}
		// The request's context ends with the call; the work registered
		// (executing a saga) outlives it, as it would the consumer's.
		for _, fn := range after {
			fn(context.WithoutCancel(ctx))
		}
		res.Result = result
		a.audit(ctx, ActionReplay, id, actor, reason, OutcomeOK, nil, "result", result, "head", head)
		return res, row.AggregateType, row.AggregateID, nil
	}

	// The effect rolls back; the event stays parked with the new error.
	_ = tx.Rollback(ctx)
	if err := inboxdb.New(a.pool).RecordReplayFailure(ctx, inboxdb.RecordReplayFailureParams{
		Error: "replay: " + applyErr.Error(), ID: row.ID,
	}); err != nil {
		return res, "", "", fmt.Errorf("inbox: replay: record failure: %w", err)
	}
	res.Result, res.Err = ResultFailed, applyErr
	a.audit(ctx, ActionReplay, id, actor, reason, OutcomeFailed, applyErr, "head", head)
	return res, row.AggregateType, row.AggregateID, nil
}

// lock reads and locks the parked event id, which must be unresolved.
func (a *Admin) lock(ctx context.Context, q *inboxdb.Queries, id uuid.UUID) (inboxdb.LockParkedRow, error) {
	row, err := q.LockParked(ctx, inboxdb.LockParkedParams{Consumer: a.consumer, EventID: id})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return row, ErrParkedNotFound
	case err != nil:
		return row, fmt.Errorf("inbox: read parked event %s: %w", id, err)
	case row.ResolvedAt != nil:
		return row, ErrNotParked
	}
	return row, nil
}

// apply runs the consumer's steps 3–5 for a parked event in tx (the
// parking checks do not apply: this is the event they parked). It returns
// the result and the AfterCommit functions; an error means nothing may be
// committed.
func (a *Admin) apply(ctx context.Context, tx pgx.Tx, q *inboxdb.Queries, row inboxdb.LockParkedRow) (string, []func(context.Context), error) {
	payload, err := OpenParked(a.keys, row.Consumer, row.EventID, row.KeyID, row.Payload)
	if err != nil {
		return "", nil, err
	}
	m := kafka.Message{
		Topic: row.Topic, Partition: int(row.KafkaPartition), Offset: row.KafkaOffset,
		Key: []byte(row.AggregateID), Value: payload,
	}
	var headers map[string]string
	if err := json.Unmarshal(row.Headers, &headers); err != nil {
		return "", nil, fmt.Errorf("headers: %w", err)
	}
	for k, v := range headers {
		m.Headers = append(m.Headers, kafka.Header{Key: k, Value: []byte(v)})
	}
	ev, err := decode(m)
	if err != nil {
		return "", nil, err
	}
	n, err := q.RecordEvent(ctx, inboxdb.RecordEventParams{
		Consumer: a.consumer, EventID: ev.ID, EventType: ev.Type,
		AggregateType: ev.AggregateType, AggregateID: ev.AggregateID, AggregateVersion: ev.AggregateVersion,
	})
	if err != nil {
		return "", nil, err
	}
	if n == 0 {
		return ResultDuplicate, nil, nil
	}
	applied, err := q.LockAppliedVersion(ctx, inboxdb.LockAppliedVersionParams{Consumer: a.consumer, AggregateType: ev.AggregateType, AggregateID: ev.AggregateID})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		applied = -1
	case err != nil:
		return "", nil, err
	}
	if ev.AggregateVersion < applied {
		return ResultStale, nil, nil
	}
	after := &afterCommit{}
	if err := a.handler(context.WithValue(ctx, afterCommitKey{}, after), tx, ev); err != nil {
		return "", nil, err
	}
	if err := q.SetAppliedVersion(ctx, inboxdb.SetAppliedVersionParams{
		Consumer: a.consumer, AggregateType: ev.AggregateType, AggregateID: ev.AggregateID, Version: ev.AggregateVersion,
	}); err != nil {
		return "", nil, err
	}
	after.mu.Lock()
	defer after.mu.Unlock()
	return ResultApplied, after.fns, nil
}

// Discard gives the parked event id up for good: it is marked discarded by
// actor with reason (required), which is the durable audit record, and
// audited in the log. The events parked behind it stay parked, now
// replayable. Errors: ErrReasonRequired, ErrParkedNotFound, ErrNotParked.
func (a *Admin) Discard(ctx context.Context, id uuid.UUID, actor, reason string) (Parked, error) {
	p, err := a.discard(ctx, id, actor, reason)
	if err != nil {
		a.audit(ctx, ActionDiscard, id, actor, reason, OutcomeDenied, err)
		return Parked{}, err
	}
	a.audit(ctx, ActionDiscard, id, actor, reason, OutcomeOK, nil)
	return p, nil
}

func (a *Admin) discard(ctx context.Context, id uuid.UUID, actor, reason string) (Parked, error) {
	switch {
	case reason == "":
		return Parked{}, ErrReasonRequired
	case len(reason) > MaxReason:
		return Parked{}, fmt.Errorf("%w: at most %d bytes", ErrReasonTooLong, MaxReason)
	}
	tx, err := postgres.Begin(ctx, a.pool)
	if err != nil {
		return Parked{}, fmt.Errorf("inbox: discard: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	q := inboxdb.New(tx)
	row, err := a.lock(ctx, q, id)
	if err != nil {
		return Parked{}, err
	}
	if _, err := q.ResolveParked(ctx, inboxdb.ResolveParkedParams{
		Resolution: ResolutionDiscarded, ResolvedBy: actor, ResolutionReason: reason, ID: row.ID,
	}); err != nil {
		return Parked{}, fmt.Errorf("inbox: discard: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return Parked{}, fmt.Errorf("inbox: discard: commit: %w", err)
	}
	now := time.Now()
	return Parked{
		ID: row.ID, Consumer: row.Consumer, EventID: row.EventID, EventType: row.EventType,
		AggregateType: row.AggregateType, AggregateID: row.AggregateID, AggregateVersion: headerVersion(row.Headers),
		Topic: row.Topic, Partition: int(row.KafkaPartition), Offset: row.KafkaOffset, Error: row.Error,
		ParkedAt: row.ParkedAt, ResolvedAt: &now, Resolution: ResolutionDiscarded, ResolvedBy: actor,
		ResolutionReason: reason, ReplayAttempts: int(row.ReplayAttempts),
	}, nil
}

// audit writes the audit line of an operator's action and counts it.
func (a *Admin) audit(ctx context.Context, action string, id uuid.UUID, actor, reason, outcome string, err error, extra ...any) {
	a.actions.WithLabelValues(a.consumer, action, outcome).Inc()
	attrs := append([]any{
		"actor", actor, "action", "inbox." + action, "event_id", id.String(), "reason", reason, "outcome", outcome,
	}, extra...)
	if err != nil {
		attrs = append(attrs, "error", err.Error())
	}
	a.log.InfoContext(ctx, "audit", attrs...)
}

// headerVersion reads the aggregate version from a parked event's headers
// (0 when absent or malformed).
func headerVersion(raw []byte) int64 {
	var h map[string]string
	if json.Unmarshal(raw, &h) != nil {
		return 0
	}
	v, err := strconv.ParseInt(h[event.HeaderAggregateVersion], 10, 64)
	if err != nil {
		return 0
	}
	return v
}
