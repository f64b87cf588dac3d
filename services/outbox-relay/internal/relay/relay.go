// Package relay publishes the rows of transactional outbox tables
// (platform/outbox, db/outbox/schema/outbox.sql) to Kafka, as DESIGN.md
// "Outbox" requires:
//
//   - Lanes. Every row carries a lane (outbox.Lane of its aggregate id, one of
//     outbox.Lanes). Replicas lease lanes in the database's outbox_lanes table;
//     a lane is published by one replica at a time, in id order, and because
//     the writer locks the business row before it inserts, id order is each
//     aggregate's commit order. Each replica aims at ceil(Lanes / live
//     replicas) lanes, claims expired leases, renews its own, and releases the
//     surplus when another replica appears — only after the batch in flight on
//     those lanes is marked, so that no event is published by two replicas in
//     the normal case.
//   - Heartbeats. Every renewal also sends a NOTIFY on channel
//     "outbox_relay" naming the replica, whether it can publish and the key
//     ids it holds. Replicas count each other by them (and by unexpired
//     leases), so a dead replica stops counting when its heartbeats stop,
//     even if its connections linger; a survivor claims the dead replica's
//     lanes the moment their lease expires. Leases last 3 s by default.
//   - A replica that cannot publish (every attempt failing for
//     HandOverAfter) while another replica says it can, hands all its lanes
//     over and stays out until the broker answers again. Alone, or when no
//     replica can publish, it keeps its lanes and keeps retrying.
//   - No cursor. A row with a lower id may commit after one with a higher id
//     (of another aggregate), so the relay never remembers "the highest id
//     published": every batch is the lowest pending ids of the owned lanes.
//   - Publish, then mark. A batch is written to Kafka with acks from all
//     in-sync replicas and marked published in one statement after the
//     broker acknowledged all of it; the mark is guarded by the lease, so a
//     replica that lost its lane cannot mark (it may have published a
//     duplicate: delivery is at least once). A batch that fails is retried
//     whole, with capped exponential backoff.
//   - Parking. A message the broker rejects for good (too large) or whose
//     payload fails authentication is parked (parked_at, last_error) and
//     counted; later events of the same aggregate are published — they are
//     not held behind it. Parking is an operator alert: an event that can
//     never be published must not stop its aggregate (and the saga waiting
//     on it).
//   - Holding. An event sealed under a key id this replica does not hold is
//     not parked: a replica that has the key can publish it (a rolling key
//     rotation). Its lane stops at it and is retried with backoff, counted
//     (outbox_lanes_held), and handed over to a replica whose heartbeat
//     says it holds the key.
//   - Wake-up. One LISTEN connection per database turns the writers' NOTIFY
//     into an immediate batch; polling is the fallback.
//   - Janitor. Published rows older than the retention are deleted in
//     batches, so the table stays bounded under constant load.
//
// One database that is down or not created yet does not stop the others:
// each database runs on its own, retrying with backoff and logging once per
// change of state.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/outbox"
)

// Defaults of Config's zero values.
const (
	DefaultBatchSize       = 500
	DefaultWorkers         = 4
	DefaultPollInterval    = time.Second
	DefaultLeaseTTL        = 3 * time.Second
	DefaultRetention       = time.Minute
	DefaultJanitorInterval = 5 * time.Second
	DefaultStatsInterval   = 5 * time.Second
	DefaultBackoffMin      = 100 * time.Millisecond
	DefaultBackoffMax      = 5 * time.Second
	// DefaultMaxBatchBytes is Kafka's default max.message.bytes: a batch
	// is cut so that its messages fit one produce request per partition,
	// which Kafka appends atomically (see worker.claim).
	DefaultMaxBatchBytes = 1 << 20
	// MaxRelayIDLen keeps "outbox-relay/<id>" within PostgreSQL's 63-byte
	// application_name, which is how a replica announces itself.
	MaxRelayIDLen = 50
	// janitorBatch bounds one DELETE of the janitor.
	janitorBatch = 5000
)

// Config configures a Relay. Zero durations and sizes take the defaults.
type Config struct {
	// ID names this replica in lane leases; unique per replica, at most
	// MaxRelayIDLen bytes.
	ID string
	// DatabaseURLs are the databases whose outbox tables are drained.
	DatabaseURLs []string
	// BatchSize is the most rows claimed, published and marked at once.
	BatchSize int
	// Workers is the number of concurrent batch loops per database; lane l
	// belongs to worker l mod Workers, so a lane is still published by one
	// loop at a time.
	Workers int
	// PollInterval is the fallback wake-up when no NOTIFY arrives.
	PollInterval time.Duration
	// LeaseTTL is how long a lane lease lasts without renewal; leases are
	// renewed (and heartbeats sent) every LeaseTTL/3. A dead replica's lanes
	// are claimed by a survivor when their lease expires: between 2/3
	// LeaseTTL and LeaseTTL after the crash.
	LeaseTTL time.Duration
	// HandOverAfter is how long every publish attempt must have failed
	// before this replica hands its lanes to a replica that can publish
	// (default 2 LeaseTTL).
	HandOverAfter time.Duration
	// Retention is how long published rows are kept before the janitor
	// deletes them; JanitorInterval is how often it runs.
	Retention       time.Duration
	JanitorInterval time.Duration
	// StatsInterval is how often outbox_table_size and
	// outbox_processing_lag_seconds are sampled.
	StatsInterval time.Duration
	// BackoffMin and BackoffMax bound the wait between retries of a failed
	// batch or a failed database operation.
	BackoffMin, BackoffMax time.Duration
	// MaxBatchBytes bounds the estimated size of one batch (the broker's
	// max.message.bytes); a single larger message is parked.
	MaxBatchBytes int
}

func (c Config) withDefaults() Config {
	set := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	c.Workers = min(c.Workers, outbox.Lanes)
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	set(&c.PollInterval, DefaultPollInterval)
	set(&c.LeaseTTL, DefaultLeaseTTL)
	set(&c.HandOverAfter, 2*c.LeaseTTL)
	set(&c.Retention, DefaultRetention)
	set(&c.JanitorInterval, DefaultJanitorInterval)
	set(&c.StatsInterval, DefaultStatsInterval)
	set(&c.BackoffMin, DefaultBackoffMin)
	set(&c.BackoffMax, DefaultBackoffMax)
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.ID == "" || len(c.ID) > MaxRelayIDLen {
		errs = append(errs, fmt.Errorf("relay id %q: must be 1 to %d bytes", c.ID, MaxRelayIDLen))
	}
	if len(c.DatabaseURLs) == 0 {
		errs = append(errs, errors.New("no database URL"))
	}
	return errors.Join(errs...)
}

// Publisher sends messages to Kafka. Publish returns once the broker
// acknowledged every message (nil), or with an error: kafka.WriteErrors
// (one entry per message, nil for those acknowledged) when only some failed,
// another error when none can be said to have succeeded. Each relay worker
// gets its own Publisher, so calls on one are sequential.
type Publisher interface {
	Publish(ctx context.Context, msgs []kafka.Message) error
	Close() error
}

// Options are the relay's collaborators.
type Options struct {
	// NewPublisher returns a Publisher for one worker (see Kafka.NewPublisher).
	NewPublisher func() Publisher
	// Keys opens PII payloads; nil when no event is sealed.
	Keys *keyring.Keyring
	// Probe reports whether the broker answers (see Kafka.Ping). A replica
	// that handed its lanes over because it could not publish comes back
	// once Probe succeeds; nil means it comes back after a pause and tries.
	Probe func(context.Context) error
	// Registerer receives the relay's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// TracerProvider creates the outbox.publish spans; nil means no-op
	// (the rows' trace context is still forwarded).
	TracerProvider trace.TracerProvider
	// Logger receives the relay's logs; nil discards them.
	Logger *slog.Logger
}

// Relay drains the outbox of every configured database. Create it with New
// and call Run once.
type Relay struct {
	cfg     Config
	opts    Options
	metrics *metrics
	tracer  trace.Tracer
	log     *slog.Logger
	dbs     []*database
	pub     publishHealth
}

// New validates cfg and returns a Relay. It connects to nothing: databases
// and the broker are reached by Run, which keeps retrying them.
func New(cfg Config, opts Options) (*Relay, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	if opts.NewPublisher == nil {
		return nil, errors.New("relay: no publisher")
	}
	opts.Logger = logs.OrDiscard(opts.Logger)
	if opts.TracerProvider == nil {
		opts.TracerProvider = noop.NewTracerProvider()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Relay{
		cfg:     cfg,
		opts:    opts,
		metrics: m,
		tracer:  opts.TracerProvider.Tracer("github.com/goodgo/goodgo/services/outbox-relay/internal/relay"),
		log:     opts.Logger,
	}
	for _, url := range cfg.DatabaseURLs {
		d, err := newDatabase(r, url)
		if err != nil {
			r.closePools()
			return nil, err
		}
		r.dbs = append(r.dbs, d)
	}
	return r, nil
}

func (r *Relay) closePools() {
	for _, d := range r.dbs {
		d.pool.Close()
	}
}

// Run relays until ctx is cancelled, then lets each worker finish the batch
// in flight (bounded by the lease TTL), releases this replica's lanes so
// that the others take over at once, and returns nil.
func (r *Relay) Run(ctx context.Context) error {
	defer r.closePools()
	var wg sync.WaitGroup
	for _, d := range r.dbs {
		wg.Go(func() { d.run(ctx) })
	}
	wg.Wait()
	return nil
}

// Ready reports nil when at least one database answered recently; the
// binary adds the broker check (BrokerReady and a Ping).
func (r *Relay) Ready(context.Context) error {
	var errs []error
	for _, d := range r.dbs {
		if err := d.health.err(); err != nil {
			errs = append(errs, err)
			continue
		}
		return nil
	}
	return fmt.Errorf("no outbox database reachable: %w", errors.Join(errs...))
}

// BrokerReady reports an error when this replica cannot publish: every
// publish attempt has failed for at least LeaseTTL (the broker or the
// partition leaders unreachable, credentials refused), or it handed its
// lanes over for that reason and the broker has not answered since.
func (r *Relay) BrokerReady(context.Context) error {
	failing, _, err := r.pub.failing(time.Now())
	if err == nil {
		err = errors.New("no attempt since")
	}
	for _, d := range r.dbs {
		if d.lanes.isOut() {
			return fmt.Errorf("broker unreachable: lanes handed over to other replicas after publishing failed: %w", err)
		}
	}
	if failing >= r.cfg.LeaseTTL {
		return fmt.Errorf("broker unreachable: publishing has failed for %s: %w", failing.Round(time.Second), err)
	}
	return nil
}
