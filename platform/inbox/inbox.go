// Package inbox is the idempotent Kafka consumer of DESIGN.md "Events":
// delivery is at least once, so every consumer records the event ids it
// processed in its own database (table inbox), in the same transaction as
// the effect, and skips what it has seen; it also ignores events older than
// the aggregate version it has already applied (table inbox_versions).
//
// Partitions are consumed concurrently, each in offset order. For each
// message Consumer:
//
//  1. begins a transaction on the consumer's pool;
//  2. skips an event it parked before, and parks (behind it) an event of an
//     aggregate that has an unresolved parked event, so the aggregate's order
//     holds;
//  3. inserts the event id into inbox — a conflict means a redelivery, which
//     is skipped (result "duplicate");
//  4. locks the aggregate's applied version; an event older than it is
//     recorded and skipped (result "stale");
//  5. calls the Handler with the transaction, raises the applied version and
//     commits (result "applied");
//  6. runs the functions the Handler registered with AfterCommit;
//  7. only then commits the Kafka offset (at once, or with the next
//     periodic commit when Config.CommitInterval is set).
//
// Steps 2 and 3–4 are one statement each (one round trip).
//
// A crash between 5 and 7 redelivers the message, which step 3 skips.
// Events of types the consumer does not apply (Config.Types) skip 1–6.
//
// Handler errors are classified. An event that can never be applied — its
// envelope does not decode, or the Handler wrapped its error with Permanent
// — is parked at once in inbox_parked with its error, headers and payload
// (result "parked") and the offset is committed, so one poison event never
// blocks its partition; later events of the same aggregate are parked
// behind it until an operator resolves it (sets resolved_at, after
// replaying or discarding the parked events). Every other error is
// transient (a database restarting, a peer unavailable): the transaction
// rolls back and the event is retried with capped exponential backoff
// (Config.BackoffMin to BackoffMax) until it succeeds or the consumer
// stops, holding back its partition, so the order of the partition holds.
// Parking a transient failure would drop the effect for good (an order
// whose saga never starts stays PENDING for ever); alerting bounds it
// instead: inbox_retries_total counts the retries and
// inbox_retry_streak_seconds shows how long the oldest failing event has
// been retried. Failures of the consumer's own database are retried the
// same way.
//
// The tables are the canonical DDL in db/inbox/schema/inbox.sql, copied into
// every consuming service's migrations.
package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/failpoint"
	"github.com/goodgo/goodgo/platform/inbox/inboxdb"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/telemetry"
)

// Results, the result label of inbox_processed_total.
const (
	ResultApplied   = "applied"
	ResultDuplicate = "duplicate"
	ResultStale     = "stale"
	ResultParked    = "parked"
	// ResultIgnored is an event of a type the consumer does not apply
	// (Config.Types): its offset is committed without a transaction.
	ResultIgnored = "ignored"
)

// Defaults of Config's zero values.
const (
	DefaultBackoffMin = 100 * time.Millisecond
	DefaultBackoffMax = 5 * time.Second

	// DefaultMaxWait leaves a loaded broker time to answer. kafka-go asks
	// the broker to hold an empty fetch for MaxWait less a quarter and
	// gives up reading the answer at MaxWait: a reply later than that
	// quarter is a timeout, on which kafka-go closes the connection and
	// dials again. At 50ms (12.5ms of slack) the order projection's reader
	// dialled the broker 75 times a second during BenchmarkOrderSaga on
	// two busy cores; 250ms leaves 62.5ms (TestReaderKeepsItsConnections).
	DefaultMaxWait = 250 * time.Millisecond
)

// ReaderErrorLog is the message of the Warn line logged for each error
// kafka-go's reader reports (see Config.Reader).
const ReaderErrorLog = "kafka reader error"

// Event is one decoded Kafka message: the envelope from the headers (see
// platform/event) and the payload, plus where it was read.
type Event struct {
	ID               uuid.UUID
	Type             string
	AggregateType    string
	AggregateID      string
	AggregateVersion int64
	OccurredAt       time.Time
	ContentType      string
	// Payload is the message value: binary protobuf of the message named
	// by Type.
	Payload []byte

	Topic     string
	Partition int
	Offset    int64
}

// Handler applies one event inside tx, the transaction that also records it
// in the inbox. It must do all its writes through tx and nothing that cannot
// be rolled back (or that is not idempotent on its own), since tx may roll
// back and the event be handled again. ctx carries the event's trace (a
// span per event, a child of the producer's).
//
// tx holds one connection of the consumer's pool, and every partition being
// applied holds one: a Handler must never wait for anything that needs
// another connection of that pool (a second transaction, a worker that
// writes through the pool), or, with as many busy partitions as
// connections, it waits for ever. Work that must follow the effect is
// registered with AfterCommit and runs once tx has committed and released
// its connection.
//
// A returned error rolls tx back. Wrap it with Permanent when retrying can
// never help (the event is invalid): the event is parked. Any other error
// is retried, with backoff, until the Handler succeeds.
type Handler func(ctx context.Context, tx pgx.Tx, ev Event) error

// Config configures a Consumer.
type Config struct {
	// Brokers are the bootstrap brokers.
	Brokers []string
	// GroupID is the Kafka consumer group: replicas of one consumer share
	// the partitions.
	GroupID string
	// Topics are the topics consumed.
	Topics []string
	// Consumer names the consumer in the inbox tables (several consumers
	// may share a database); default GroupID.
	Consumer string
	// Types, when not empty, are the event types the Handler applies; the
	// topics' other events are skipped without touching the database
	// (result "ignored"), so a consumer pays nothing for them. Empty means
	// every type.
	Types []string
	// BackoffMin and BackoffMax bound the wait between retries of an event
	// that failed transiently (doubling from BackoffMin, capped at
	// BackoffMax; defaults 100ms and 5s). Such an event is retried until it
	// succeeds: only a Permanent error parks it.
	BackoffMin, BackoffMax time.Duration
	// StartOffset is where a new group starts: kafka.FirstOffset (0, the
	// default: kafka-go's group reader takes 0 for it) or kafka.LastOffset.
	StartOffset int64
	// CommitInterval > 0 commits offsets periodically instead of after each
	// message (still only offsets of messages whose effect committed);
	// faster, with more redeliveries after a crash.
	CommitInterval time.Duration
	// MaxWait bounds how long a fetch waits for new messages; default
	// DefaultMaxWait. A fetch returns as soon as a message arrives, so
	// MaxWait does not delay events; it is the period of the empty
	// fetches of an idle partition and bounds how long closing the reader
	// waits for one. See DefaultMaxWait before lowering it.
	MaxWait time.Duration
}

// Options are the consumer's collaborators.
type Options struct {
	// Registerer receives inbox_processed_total, inbox_consumer_lag,
	// inbox_retries_total and inbox_retry_streak_seconds; nil registers
	// nothing. Consumers on one registry share the series (labelled by
	// consumer).
	Registerer prometheus.Registerer
	// TracerProvider creates the per-event spans; nil means no-op.
	TracerProvider trace.TracerProvider
	// Logger receives the consumer's logs; nil discards them.
	Logger *slog.Logger
	// Dialer opens the reader's connections: TLS and SASL come from it
	// (platform/kafkaconn builds one from the KAFKA_* settings). Nil means
	// kafka-go's default, plaintext without SASL.
	Dialer *kafka.Dialer
	// Keys seal the payloads of parked events (required): an event can
	// carry personal data and a parked one waits for an operator.
	Keys *keyring.Keyring
}

// Consumer reads events and applies each once. Create it with New and call
// Run once.
type Consumer struct {
	cfg     Config
	pool    *pgxpool.Pool
	handler Handler
	types   map[string]bool // Config.Types; nil accepts every type
	keys    *keyring.Keyring
	reader  *kafka.Reader
	tracer  trace.Tracer
	log     *slog.Logger
	results *prometheus.CounterVec
	lag     prometheus.Gauge
	retries prometheus.Counter
	streaks *streaks
	// afterEffect, set only by tests, runs between the effect's commit and
	// the offset commit; returning true makes Run return there, as if the
	// process died.
	afterEffect func(Event) bool
}

// ErrPermanent marks handler errors that retrying cannot fix.
var ErrPermanent = errors.New("permanent")

// Permanent wraps err so that the event is parked at once, without retries:
// for an event that can never be applied (it does not decode, it breaks an
// invariant). Errors that are not Permanent are retried until they succeed.
func Permanent(err error) error {
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

// ErrNotInHandler is returned by AfterCommit for a context that is not a
// Handler's.
var ErrNotInHandler = errors.New("inbox: AfterCommit needs the context of a Handler")

// afterCommitKey is the context key of the Handler's after-commit list.
type afterCommitKey struct{}

// afterCommit collects the functions registered during one Handler call.
type afterCommit struct {
	mu  sync.Mutex
	fns []func(context.Context)
}

// AfterCommit registers fn to run once the transaction of the event being
// handled has committed, before the event's offset is committed; ctx must be
// the context the Handler was called with. It is for work that must follow
// the effect but cannot be part of it, and must not run while the Handler's
// transaction holds a connection — such as executing a saga the Handler
// created in tx. If the transaction rolls back, fn is dropped (the Handler
// runs again for the retry). fn gets the event's context, runs on the
// partition's goroutine (its partition waits for it, no connection is
// held) and cannot undo the commit: it must handle its own failures, and
// the event is not redelivered for them unless the process stops before
// the offset commit.
func AfterCommit(ctx context.Context, fn func(context.Context)) error {
	ac, ok := ctx.Value(afterCommitKey{}).(*afterCommit)
	if !ok {
		return ErrNotInHandler
	}
	ac.mu.Lock()
	defer ac.mu.Unlock()
	ac.fns = append(ac.fns, fn)
	return nil
}

// Reader is the reader configuration of c's consumer group, reaching the
// brokers through dialer (nil: plaintext), with what every consumer of this
// repository uses: fetches of at least a byte and at most 10 MiB, and group
// timings that bound a dead member's pause. kafka-go waits 30 s by default
// before the group notices a consumer that died without leaving (kill -9)
// and hands its partitions to another; new events wait that long. A
// heartbeat every second and a 6 s session bound the pause.
//
// The reader's errors go to logger at Warn: kafka-go recovers from them by
// closing the partition's connection and dialling again, so a steady
// stream of them is a cost nothing else shows.
func (c Config) Reader(dialer *kafka.Dialer, logger *slog.Logger) kafka.ReaderConfig {
	maxWait := c.MaxWait
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	logger = logs.OrDiscard(logger)
	return kafka.ReaderConfig{
		Brokers:           c.Brokers,
		Dialer:            dialer,
		GroupID:           c.GroupID,
		GroupTopics:       c.Topics,
		StartOffset:       c.StartOffset,
		CommitInterval:    c.CommitInterval,
		MaxWait:           maxWait,
		MinBytes:          1,
		MaxBytes:          10 << 20,
		HeartbeatInterval: time.Second,
		SessionTimeout:    6 * time.Second,
		RebalanceTimeout:  6 * time.Second,
		JoinGroupBackoff:  500 * time.Millisecond,
		ErrorLogger: kafka.LoggerFunc(func(format string, args ...any) {
			logger.Warn(ReaderErrorLog, "group", c.GroupID, "detail", fmt.Sprintf(format, args...))
		}),
	}
}

// New returns a Consumer applying events to pool's database with handler.
// It connects to nothing until Run.
func New(cfg Config, pool *pgxpool.Pool, handler Handler, opts Options) (*Consumer, error) {
	switch {
	case len(cfg.Brokers) == 0:
		return nil, errors.New("inbox: no broker")
	case cfg.GroupID == "":
		return nil, errors.New("inbox: no consumer group")
	case len(cfg.Topics) == 0:
		return nil, errors.New("inbox: no topic")
	case pool == nil || handler == nil:
		return nil, errors.New("inbox: nil pool or handler")
	case opts.Keys == nil:
		return nil, ErrNoKeys
	}
	if cfg.Consumer == "" {
		cfg.Consumer = cfg.GroupID
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = noop.NewTracerProvider()
	}
	opts.Logger = logs.OrDiscard(opts.Logger)
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	initResults(m.results, cfg.Consumer)
	var types map[string]bool
	for _, t := range cfg.Types {
		if types == nil {
			types = map[string]bool{}
		}
		types[t] = true
	}
	return &Consumer{
		cfg:     cfg,
		pool:    pool,
		handler: handler,
		types:   types,
		keys:    opts.Keys,
		reader:  kafka.NewReader(cfg.Reader(opts.Dialer, opts.Logger)),
		tracer:  opts.TracerProvider.Tracer("github.com/goodgo/goodgo/platform/inbox"),
		log:     opts.Logger.With("consumer", cfg.Consumer),
		results: m.results,
		lag:     m.lag.WithLabelValues(cfg.Consumer),
		retries: m.retries.WithLabelValues(cfg.Consumer),
		streaks: &streaks{gauge: m.streak.WithLabelValues(cfg.Consumer), since: map[partition]time.Time{}},
	}, nil
}

// initResults creates consumer's inbox_processed_total series at zero: a
// series that first appears at 1 has no increase, so the first parked event
// would never raise the InboxEventsParked alert (deploy/prometheus/rules).
func initResults(results *prometheus.CounterVec, consumer string) {
	for _, r := range []string{ResultApplied, ResultDuplicate, ResultStale, ResultParked, ResultIgnored} {
		results.WithLabelValues(consumer, r)
	}
}

// metrics are the consumer's series, labelled by consumer.
type metrics struct {
	results *prometheus.CounterVec
	lag     *prometheus.GaugeVec
	retries *prometheus.CounterVec
	streak  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "inbox_processed_total",
			Help: "Events processed by an inbox consumer, by result (applied, duplicate, stale, parked, ignored).",
		}, []string{"consumer", "result"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "inbox_consumer_lag",
			Help: "Messages behind the end of the partitions a consumer reads (kafka-go's estimate).",
		}, []string{"consumer"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "inbox_retries_total",
			Help: "Attempts to apply an event that failed transiently and are retried (the handler's errors and the inbox's own database failures).",
		}, []string{"consumer"}),
		streak: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "inbox_retry_streak_seconds",
			Help: "How long the oldest event now being retried has been failing (0: none); its partition waits meanwhile. Alert when it grows.",
		}, []string{"consumer"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.results, err = telemetry.Register(reg, "inbox", m.results); err != nil {
		return metrics{}, err
	}
	if m.lag, err = telemetry.Register(reg, "inbox", m.lag); err != nil {
		return metrics{}, err
	}
	if m.retries, err = telemetry.Register(reg, "inbox", m.retries); err != nil {
		return metrics{}, err
	}
	if m.streak, err = telemetry.Register(reg, "inbox", m.streak); err != nil {
		return metrics{}, err
	}
	return m, nil
}

// streaks tracks, per partition, since when its current event has been
// failing, and shows the oldest in inbox_retry_streak_seconds. The gauge is
// refreshed at every failure and success, so it lags by at most
// Config.BackoffMax.
type streaks struct {
	gauge prometheus.Gauge
	mu    sync.Mutex
	since map[partition]time.Time
}

// failed records a failure of p's current event.
func (s *streaks) failed(p partition) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.since[p]; !ok {
		s.since[p] = time.Now()
	}
	s.refresh()
}

// ended records that p's current event no longer fails (applied, parked,
// or the consumer stopped).
func (s *streaks) ended(p partition) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.since[p]; !ok {
		return
	}
	delete(s.since, p)
	s.refresh()
}

func (s *streaks) refresh() {
	var oldest time.Duration
	for _, t := range s.since {
		oldest = max(oldest, time.Since(t))
	}
	s.gauge.Set(oldest.Seconds())
}

// Run consumes until ctx is cancelled, then closes the reader (leaving the
// group) and returns nil. A message being applied when ctx is cancelled is
// rolled back or committed as the database decides; its offset is committed
// only if its effect was, so it is redelivered otherwise.
//
// Kafka being unreachable, at start or later, does not stop Run: the
// reader reconnects and rejoins the group on its own, and Run logs each
// failed fetch ("kafka fetch failed; retrying") and fetches again with
// backoff until the broker is back. A binary's readiness should check the
// broker (kafkaconn.Settings.Ping) to say so meanwhile.
//
// Partitions are applied concurrently, each by its own goroutine in offset
// order: an aggregate's events share a partition (the key is the aggregate
// id), so their order holds, and a slow event holds back only its own
// partition.
func (c *Consumer) Run(ctx context.Context) error {
	defer func() {
		if err := c.reader.Close(); err != nil {
			c.log.Warn("closing kafka reader", "error", err.Error())
		}
	}()
	c.log.InfoContext(ctx, "inbox consumer started", "group", c.cfg.GroupID, "topics", c.cfg.Topics)
	ctx, stop := context.WithCancel(ctx)
	queues := map[partition]chan kafka.Message{}
	var wg sync.WaitGroup
	defer func() {
		stop()
		for _, q := range queues {
			close(q)
		}
		wg.Wait() // before the reader closes: a partition may be committing
	}()
	lagEvery := time.NewTicker(time.Second)
	defer lagEvery.Stop()
	retry := c.newBackoff()
	for {
		m, err := c.reader.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// kafka-go reports the broker's absence after a few failed
			// attempts and keeps reconnecting underneath: wait and fetch
			// again rather than stop the binary (issue 10).
			wait := retry.Next()
			c.log.WarnContext(ctx, "kafka fetch failed; retrying", "error", err.Error(), "retry_in", wait.String())
			if backoff.Sleep(ctx, wait) != nil {
				return nil
			}
			continue
		}
		retry.Reset()
		p := partition{m.Topic, m.Partition}
		q := queues[p]
		if q == nil {
			q = make(chan kafka.Message, partitionQueue)
			queues[p] = q
			wg.Go(func() { c.consume(ctx, stop, q) })
		}
		select {
		case q <- m:
		case <-ctx.Done():
			return nil
		}
		select {
		case <-lagEvery.C:
			c.lag.Set(float64(c.reader.Stats().Lag))
		default:
		}
	}
}

// partition identifies one partition of one topic.
type partition struct {
	topic string
	id    int
}

// partitionQueue is how many fetched messages wait for each partition's
// goroutine before fetching blocks.
const partitionQueue = 64

// consume applies one partition's messages in order and commits each
// offset after its effect. It returns when msgs is closed or ctx is done;
// the afterEffect hook stops the whole consumer.
func (c *Consumer) consume(ctx context.Context, stop context.CancelFunc, msgs <-chan kafka.Message) {
	for m := range msgs {
		if ctx.Err() != nil {
			return
		}
		// process and commit fail only when ctx is done: they retry
		// everything else.
		ev, err := c.process(ctx, m)
		if err != nil {
			return
		}
		if c.afterEffect != nil && c.afterEffect(ev) {
			stop()
			return
		}
		// The effect is committed, the offset not yet (the orchestrator is
		// the only binary with an inbox consumer).
		failpoint.Hit("orchestrator.inbox.after-apply")
		if err := c.commit(ctx, m); err != nil {
			return
		}
	}
}

// commit commits m's offset, retrying a failed commit (the broker may be
// briefly unavailable): not committing only means a redelivery, which the
// inbox absorbs, but a consumer that never commits replays everything.
func (c *Consumer) commit(ctx context.Context, m kafka.Message) error {
	b := c.newBackoff()
	for {
		err := c.reader.CommitMessages(ctx, m)
		if err == nil {
			return nil
		}
		c.log.WarnContext(ctx, "committing offset failed; retrying", "error", err.Error())
		if backoff.Sleep(ctx, b.Next()) != nil {
			return ctx.Err()
		}
	}
}

// process applies m once, or parks it; it returns an error only when ctx is
// cancelled before the outcome was committed.
func (c *Consumer) process(ctx context.Context, m kafka.Message) (Event, error) {
	ev, decodeErr := decode(m)
	if decodeErr == nil && c.types != nil && !c.types[ev.Type] {
		c.results.WithLabelValues(c.cfg.Consumer, ResultIgnored).Inc()
		return ev, nil
	}
	hctx := propagation.TraceContext{}.Extract(ctx, headerCarrier(m.Headers))
	hctx, span := c.tracer.Start(hctx, "inbox.handle "+ev.Type,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.consumer.group.name", c.cfg.GroupID),
			attribute.String("messaging.destination.name", m.Topic),
			attribute.Int("messaging.destination.partition.id", m.Partition),
			attribute.Int64("messaging.kafka.offset", m.Offset),
			attribute.String("messaging.message.id", ev.ID.String()),
			attribute.String("aggregate.id", ev.AggregateID),
			attribute.Int64("aggregate.version", ev.AggregateVersion),
		))
	defer span.End()

	var result string
	var err error
	if decodeErr != nil {
		result, err = c.park(hctx, m, ev, Permanent(decodeErr))
	} else {
		result, err = c.apply(hctx, m, ev)
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return ev, err
	}
	span.SetAttributes(attribute.String("inbox.result", result))
	c.results.WithLabelValues(c.cfg.Consumer, result).Inc()
	return ev, nil
}

// dbError marks failures of the consumer's own statements, which are
// retried without counting against the event.
type dbError struct{ err error }

func (e dbError) Error() string { return e.err.Error() }
func (e dbError) Unwrap() error { return e.err }

// apply applies ev, retrying transient failures until they succeed or ctx
// is done, and parks it on a permanent one.
func (c *Consumer) apply(ctx context.Context, m kafka.Message, ev Event) (string, error) {
	p := partition{m.Topic, m.Partition}
	defer c.streaks.ended(p)
	b := c.newBackoff()
	attempts := 0
	for {
		result, err := c.applyOnce(ctx, m, ev)
		if err == nil {
			if attempts > 0 {
				c.log.InfoContext(ctx, "event applied after retries", "event_id", ev.ID.String(), "event_type", ev.Type,
					"attempts", attempts+1)
			}
			return result, nil
		}
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		var dbErr dbError
		switch {
		case errors.As(err, &dbErr):
			c.log.WarnContext(ctx, "inbox database failure; retrying", "event_id", ev.ID.String(), "error", err.Error())
		case errors.Is(err, ErrPermanent):
			return c.park(ctx, m, ev, err)
		default:
			c.log.WarnContext(ctx, "handler failed; retrying", "event_id", ev.ID.String(), "event_type", ev.Type,
				"aggregate_id", ev.AggregateID, "attempt", attempts+1, "error", err.Error())
		}
		attempts++
		c.retries.Inc()
		c.streaks.failed(p)
		if backoff.Sleep(ctx, b.Next()) != nil {
			return "", ctx.Err()
		}
	}
}

// applyOnce runs one transaction for ev. Handler errors are returned as
// they are; the consumer's own failures as dbError.
func (c *Consumer) applyOnce(ctx context.Context, m kafka.Message, ev Event) (result string, err error) {
	tx, err := postgres.Begin(ctx, c.pool)
	if err != nil {
		return "", dbError{err}
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	q := inboxdb.New(tx)
	name := c.cfg.Consumer

	// One round trip per step: BEGIN with the parked state, then record
	// and lock, then the handler's statements, and the version with the
	// COMMIT (three round trips, plus the handler's).
	state, err := q.ParkedState(ctx, inboxdb.ParkedStateParams{
		Consumer: name, EventID: ev.ID, AggregateType: ev.AggregateType, AggregateID: ev.AggregateID,
	})
	if err != nil {
		return "", dbError{err}
	}
	if state.Parked {
		return ResultDuplicate, nil
	}
	if blocker := state.Blocker; blocker != uuid.Nil {
		if err := c.insertParked(ctx, q, m, ev, fmt.Errorf("held behind parked event %s of the same aggregate", blocker)); err != nil {
			return "", dbError{err}
		}
		if err := tx.Commit(ctx); err != nil {
			return "", dbError{err}
		}
		c.log.WarnContext(ctx, "event parked behind an unresolved parked event of its aggregate",
			"event_id", ev.ID.String(), "blocked_by", blocker.String(), "aggregate_id", ev.AggregateID)
		return ResultParked, nil
	}

	// A redelivery locks the aggregate's version row too before it is
	// skipped (rolled back): rare, and it waits only while another
	// consumer of the group applies the same aggregate.
	rec, err := q.RecordEventLockVersion(ctx, inboxdb.RecordEventLockVersionParams{
		Consumer: name, EventID: ev.ID, EventType: ev.Type,
		AggregateType: ev.AggregateType, AggregateID: ev.AggregateID, AggregateVersion: ev.AggregateVersion,
	})
	if err != nil {
		return "", dbError{err}
	}
	if rec.Recorded == 0 {
		return ResultDuplicate, nil
	}
	if ev.AggregateVersion < rec.Applied {
		// Recorded in the inbox, not applied: an older event can never
		// roll the consumer's state back.
		if err := tx.Commit(ctx); err != nil {
			return "", dbError{err}
		}
		return ResultStale, nil
	}
	after := &afterCommit{}
	if err := c.handler(context.WithValue(ctx, afterCommitKey{}, after), tx, ev); err != nil {
		return "", err
	}
	if err := inboxdb.New(postgres.Pipelined(tx)).SetAppliedVersion(ctx, inboxdb.SetAppliedVersionParams{
		Consumer: name, AggregateType: ev.AggregateType, AggregateID: ev.AggregateID, Version: ev.AggregateVersion,
	}); err != nil {
		return "", dbError{err}
	}
	if err := tx.Commit(ctx); err != nil {
		return "", dbError{err}
	}
	after.mu.Lock()
	fns := after.fns
	after.mu.Unlock()
	for _, fn := range fns {
		fn(ctx)
	}
	return ResultApplied, nil
}

// park records ev in inbox_parked with cause, retrying database failures.
func (c *Consumer) park(ctx context.Context, m kafka.Message, ev Event, cause error) (string, error) {
	b := c.newBackoff()
	for {
		tx, err := postgres.Begin(ctx, c.pool)
		if err == nil {
			err = c.insertParked(ctx, inboxdb.New(tx), m, ev, cause)
			if err == nil {
				err = tx.Commit(ctx)
			}
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
		if err == nil {
			c.log.ErrorContext(ctx, "event parked: an operator must resolve it; later events of its aggregate are parked behind it",
				"event_id", ev.ID.String(), "event_type", ev.Type, "aggregate_type", ev.AggregateType,
				"aggregate_id", ev.AggregateID, "aggregate_version", ev.AggregateVersion,
				"topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "error", cause.Error())
			return ResultParked, nil
		}
		c.log.WarnContext(ctx, "parking an event failed; retrying", "event_id", ev.ID.String(), "error", err.Error())
		if backoff.Sleep(ctx, b.Next()) != nil {
			return "", ctx.Err()
		}
	}
}

func (c *Consumer) insertParked(ctx context.Context, q *inboxdb.Queries, m kafka.Message, ev Event, cause error) error {
	return insertParked(ctx, q, c.keys, c.cfg.Consumer, m, ev, cause)
}

// Decode reads the envelope of m as Consumer does, for consumers that run
// their own loop (a projector applying events in batches). A message
// without a usable envelope still gets an identity (a name-based UUID of
// its position, so a redelivery has the same one); the error says what is
// wrong with it, and such an event should be parked (Park).
func Decode(m kafka.Message) (Event, error) { return decode(m) }

// Park records ev, read from m, in consumer's inbox_parked with cause,
// through db (the caller's transaction), its payload sealed with keys as
// Consumer seals it, so that the operator tools (Admin, OpenParked) work
// on it alike. It is for consumers that run their own loop; they must
// also park behind it the later events of its aggregate, as Consumer does.
func Park(ctx context.Context, db inboxdb.DBTX, keys *keyring.Keyring, consumer string, m kafka.Message, ev Event, cause error) error {
	if keys == nil {
		return ErrNoKeys
	}
	return insertParked(ctx, inboxdb.New(db), keys, consumer, m, ev, cause)
}

func insertParked(ctx context.Context, q *inboxdb.Queries, keys *keyring.Keyring, consumer string, m kafka.Message, ev Event, cause error) error {
	headers := map[string]string{}
	for _, h := range m.Headers {
		headers[h.Key] = string(h.Value)
	}
	hj, err := json.Marshal(headers)
	if err != nil {
		return err
	}
	kid, payload, err := keys.Seal(m.Value, parkedAAD(consumer, ev.ID))
	if err != nil {
		return fmt.Errorf("seal parked payload: %w", err)
	}
	_, err = q.ParkEvent(ctx, inboxdb.ParkEventParams{
		Consumer: consumer, EventID: ev.ID, Topic: m.Topic,
		KafkaPartition: int32(m.Partition), KafkaOffset: m.Offset,
		AggregateType: ev.AggregateType, AggregateID: ev.AggregateID, EventType: ev.Type,
		Headers: hj, Payload: payload, KeyID: kid, Error: cause.Error(),
	})
	return err
}

// decode reads the envelope from m's headers. A message without a usable
// envelope still gets an identity (a name-based UUID of its position, so a
// redelivery has the same one) and is parked by the caller.
func decode(m kafka.Message) (Event, error) {
	ev := Event{Payload: m.Value, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
	var errs []error
	for _, h := range m.Headers {
		v := string(h.Value)
		switch h.Key {
		case event.HeaderEventID:
			id, err := uuid.Parse(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("header %s: %w", h.Key, err))
			}
			ev.ID = id
		case event.HeaderEventType:
			ev.Type = v
		case event.HeaderAggregateType:
			ev.AggregateType = v
		case event.HeaderAggregateID:
			ev.AggregateID = v
		case event.HeaderAggregateVersion:
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("header %s: %w", h.Key, err))
			}
			ev.AggregateVersion = n
		case event.HeaderOccurredAt:
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				errs = append(errs, fmt.Errorf("header %s: %w", h.Key, err))
			}
			ev.OccurredAt = t
		case event.HeaderContentType:
			ev.ContentType = v
		}
	}
	for name, missing := range map[string]bool{
		event.HeaderEventID:       ev.ID == uuid.Nil,
		event.HeaderEventType:     ev.Type == "",
		event.HeaderAggregateType: ev.AggregateType == "",
		event.HeaderAggregateID:   ev.AggregateID == "",
	} {
		if missing {
			errs = append(errs, fmt.Errorf("header %s missing", name))
		}
	}
	if ev.ID == uuid.Nil {
		ev.ID = uuid.NewSHA1(uuid.NameSpaceURL, fmt.Appendf(nil, "kafka:%s/%d/%d", m.Topic, m.Partition, m.Offset))
	}
	if ev.AggregateID == "" {
		ev.AggregateID = string(m.Key)
	}
	if err := errors.Join(errs...); err != nil {
		return ev, fmt.Errorf("bad event envelope: %w", err)
	}
	return ev, nil
}

// headerCarrier reads W3C trace context from Kafka headers.
type headerCarrier []kafka.Header

func (h headerCarrier) Get(key string) string {
	for _, x := range h {
		if x.Key == key {
			return string(x.Value)
		}
	}
	return ""
}
func (h headerCarrier) Set(string, string) {}
func (h headerCarrier) Keys() []string {
	out := make([]string, len(h))
	for i, x := range h {
		out[i] = x.Key
	}
	return out
}

func (c *Consumer) newBackoff() *backoff.Exponential {
	return &backoff.Exponential{Policy: backoff.Policy{Min: c.cfg.BackoffMin, Max: c.cfg.BackoffMax}}
}
