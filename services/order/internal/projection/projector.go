package projection

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/telemetry"
)

// Defaults of Config's zero values.
const (
	DefaultGroupID  = "order-read-projector"
	DefaultMaxBatch = 1000
)

// Config configures a Projector.
type Config struct {
	// Config is the consumer group and how it reads: Brokers; GroupID
	// (default order-read-projector; replicas share the partitions; it
	// also names the consumer in the inbox tables); Topics (default the
	// order, payment and inventory topics); StartOffset; CommitInterval
	// (> 0 commits offsets in the background at that period instead of
	// after each batch: fewer round trips, more redeliveries after a
	// crash, which the inbox absorbs; default 0); MaxWait (default
	// inbox.DefaultMaxWait); BackoffMin and BackoffMax (the wait
	// between attempts of a batch that failed, the read database
	// unavailable; defaults 100ms and 5s). Consumer and Types are unused.
	inbox.Config
	// MaxBatch bounds the events applied in one transaction (default
	// 1000). A batch is whatever has been fetched when the previous one
	// committed: one event when traffic is light (no added latency), up to
	// MaxBatch under load (throughput).
	MaxBatch int
}

// Options are the projector's collaborators.
type Options struct {
	// Registerer receives the order_projection_* metrics; nil registers
	// nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Dialer opens the reader's connections (TLS, SASL); nil: plaintext.
	Dialer *kafka.Dialer
	// OnCommit, when set, is called after each batch's offsets were
	// handed to the reader, with the highest offset per partition: the
	// rebuild uses it to know when it has caught up.
	OnCommit func(map[Partition]int64)
	// OnApplied, when set, is called after each batch's view transaction
	// committed, with what it did (benchmarks measure the lag with it).
	OnApplied func(Outcome)
}

// Partition is one partition of one topic.
type Partition struct {
	Topic string
	ID    int
}

// Metrics are the projector's series.
type Metrics struct {
	events *prometheus.CounterVec
	lag    prometheus.Histogram
	batch  prometheus.Histogram
}

// NewMetrics creates (and registers with reg, when not nil) the series;
// projectors sharing a registry share them (a rebuild beside the live one).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "order_projection_events_total",
			Help: "Events read by the order view projector, by result: applied, stale (older than the applied version), duplicate (redelivered), parked (malformed, or behind a parked event of its aggregate).",
		}, []string{"result"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "order_projection_lag_seconds",
			Help:    "From an event's occurred-at to the commit of the view change it made.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "order_projection_batch_size",
			Help:    "Events per view transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.events, err = telemetry.Register(reg, "projection", m.events); err != nil {
		return nil, err
	}
	if m.lag, err = telemetry.Register(reg, "projection", m.lag); err != nil {
		return nil, err
	}
	if m.batch, err = telemetry.Register(reg, "projection", m.batch); err != nil {
		return nil, err
	}
	// Every result at zero from the start: a series that first appears at
	// 1 has no increase, so the first parked event would not raise the
	// ProjectionEventsParked alert (deploy/prometheus/rules).
	for _, r := range []string{"applied", "stale", "duplicate", "parked", "ignored"} {
		m.events.WithLabelValues(r)
	}
	return m, nil
}

// Projector consumes the order, payment and inventory topics into a view
// table through a Store. Create it with New and call Run once.
type Projector struct {
	cfg   Config
	store *Store
	// readerCfg makes reader when Run starts: kafka-go's group reader
	// joins its group as it is made.
	readerCfg kafka.ReaderConfig
	reader    *kafka.Reader
	metrics   *Metrics
	log       *slog.Logger
	opts      Options
}

// New returns a Projector applying through store. It connects to nothing
// until Run.
func New(cfg Config, store *Store, m *Metrics, opts Options) (*Projector, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("projection: no broker")
	}
	if store == nil || m == nil {
		return nil, errors.New("projection: nil store or metrics")
	}
	if cfg.GroupID == "" {
		cfg.GroupID = DefaultGroupID
	}
	if len(cfg.Topics) == 0 {
		cfg.Topics = event.Topics
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = inbox.DefaultBackoffMin
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = inbox.DefaultBackoffMax
	}
	opts.Logger = logs.OrDiscard(opts.Logger)
	rc := cfg.Reader(opts.Dialer, opts.Logger)
	rc.QueueCapacity = cfg.MaxBatch
	return &Projector{
		cfg:       cfg,
		store:     store,
		metrics:   m,
		log:       opts.Logger.With("consumer", cfg.GroupID),
		opts:      opts,
		readerCfg: rc,
	}, nil
}

// Run projects until ctx is cancelled, then leaves the group and returns
// nil. Kafka or the read database being unavailable does not stop it: it
// logs and retries with backoff. A batch's offsets are committed only
// after its view transaction has, so a crash at any point redelivers what
// was not committed, and the inbox skips what was.
func (p *Projector) Run(ctx context.Context) error {
	p.reader = kafka.NewReader(p.readerCfg)
	defer func() {
		if err := p.reader.Close(); err != nil {
			p.log.Warn("closing kafka reader", "error", err.Error())
		}
	}()
	p.log.InfoContext(ctx, "order view projector started", "topics", p.cfg.Topics, "table", p.store.table)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	fetched := make(chan kafka.Message, p.cfg.MaxBatch)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { p.fetch(ctx, fetched) })
	batch := make([]kafka.Message, 0, p.cfg.MaxBatch)
	for {
		batch = batch[:0]
		select {
		case m := <-fetched:
			batch = append(batch, m)
		case <-ctx.Done():
			return nil
		}
	drain:
		for len(batch) < p.cfg.MaxBatch {
			select {
			case m := <-fetched:
				batch = append(batch, m)
			default:
				break drain
			}
		}
		if err := p.project(ctx, batch); err != nil {
			return nil //nolint:nilerr // only ctx ends project: Run's contract is nil on cancel
		}
	}
}

// fetch reads messages into out until ctx is done, retrying fetch errors.
func (p *Projector) fetch(ctx context.Context, out chan<- kafka.Message) {
	retry := &backoff.Exponential{Policy: backoff.Policy{Min: p.cfg.BackoffMin, Max: p.cfg.BackoffMax}}
	for {
		m, err := p.reader.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := retry.Next()
			p.log.WarnContext(ctx, "kafka fetch failed; retrying", "error", err.Error(), "retry_in", wait.String())
			if backoff.Sleep(ctx, wait) != nil {
				return
			}
			continue
		}
		retry.Reset()
		select {
		case out <- m:
		case <-ctx.Done():
			return
		}
	}
}

// project applies one batch, retrying until it commits, then commits its
// offsets. It returns an error only when ctx is done.
func (p *Projector) project(ctx context.Context, batch []kafka.Message) error {
	msgs := make([]Message, 0, len(batch))
	ignored := 0
	for _, km := range batch {
		ev, err := inbox.Decode(km)
		if err == nil && !projected[ev.Type] {
			ignored++
			continue
		}
		m := Message{Kafka: km, Change: Change{Event: ev}}
		if err != nil {
			m.Err = err
		} else if m.Change, err = Decode(ev); err != nil {
			m.Err = err
		}
		msgs = append(msgs, m)
	}
	if ignored > 0 {
		p.metrics.events.WithLabelValues("ignored").Add(float64(ignored))
	}
	if len(msgs) > 0 {
		retry := &backoff.Exponential{Policy: backoff.Policy{Min: p.cfg.BackoffMin, Max: p.cfg.BackoffMax}}
		for {
			out, err := p.store.ApplyBatch(ctx, msgs)
			if err == nil {
				p.record(ctx, out)
				if p.opts.OnApplied != nil {
					p.opts.OnApplied(out)
				}
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			wait := retry.Next()
			p.log.WarnContext(ctx, "applying a batch failed; retrying", "events", len(msgs), "error", err.Error(), "retry_in", wait.String())
			if backoff.Sleep(ctx, wait) != nil {
				return ctx.Err()
			}
		}
	}
	return p.commit(ctx, batch)
}

var projected = func() map[string]bool {
	m := map[string]bool{}
	for _, t := range Types {
		m[t] = true
	}
	return m
}()

func (p *Projector) record(ctx context.Context, out Outcome) {
	p.metrics.batch.Observe(float64(out.Applied + out.Stale + out.Duplicate + out.Parked))
	for result, n := range map[string]int{"applied": out.Applied, "stale": out.Stale, "duplicate": out.Duplicate, "parked": out.Parked} {
		if n > 0 {
			p.metrics.events.WithLabelValues(result).Add(float64(n))
		}
	}
	for _, at := range out.AppliedAt {
		p.metrics.lag.Observe(out.Committed.Sub(at).Seconds())
	}
	for _, pe := range out.ParkedEvents {
		p.log.ErrorContext(ctx, "event parked: an operator must resolve it; later events of its aggregate are parked behind it",
			"event_id", pe.Event.ID.String(), "event_type", pe.Event.Type, "aggregate_type", pe.Event.AggregateType,
			"aggregate_id", pe.Event.AggregateID, "aggregate_version", pe.Event.AggregateVersion,
			"topic", pe.Event.Topic, "partition", pe.Event.Partition, "offset", pe.Event.Offset, "error", pe.Cause)
	}
}

// commit commits batch's offsets, retrying: not committing only means a
// redelivery, which the inbox absorbs.
func (p *Projector) commit(ctx context.Context, batch []kafka.Message) error {
	retry := &backoff.Exponential{Policy: backoff.Policy{Min: p.cfg.BackoffMin, Max: p.cfg.BackoffMax}}
	for {
		err := p.reader.CommitMessages(ctx, batch...)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.log.WarnContext(ctx, "committing offsets failed; retrying", "error", err.Error())
		if backoff.Sleep(ctx, retry.Next()) != nil {
			return ctx.Err()
		}
	}
	if p.opts.OnCommit != nil {
		high := map[Partition]int64{}
		for _, m := range batch {
			k := Partition{m.Topic, m.Partition}
			high[k] = max(high[k], m.Offset)
		}
		p.opts.OnCommit(high)
	}
	return nil
}
