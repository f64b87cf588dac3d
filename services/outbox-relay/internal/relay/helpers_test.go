package relay_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/relay"
)

// outboxMigrations is a service database as the relay sees it: the
// canonical outbox DDL (read from db/outbox/schema, so that a drift shows
// here) and a stand-in business table.
func outboxMigrations(tb testing.TB) fstest.MapFS {
	tb.Helper()
	ddl, err := os.ReadFile("../../../../db/outbox/schema/outbox.sql")
	require.NoError(tb, err)
	return fstest.MapFS{
		"000001_outbox.up.sql":   {Data: ddl},
		"000001_outbox.down.sql": {Data: []byte("DROP TABLE outbox; DROP TABLE outbox_lanes;")},
		"000002_orders.up.sql":   {Data: []byte("CREATE TABLE orders (id TEXT PRIMARY KEY, version BIGINT NOT NULL);")},
		"000002_orders.down.sql": {Data: []byte("DROP TABLE orders;")},
	}
}

// newOutboxDB returns a fresh migrated database, dropped at test end.
func newOutboxDB(tb testing.TB) (string, *pgxpool.Pool) {
	tb.Helper()
	return pgtest.NewDatabase(tb, outboxMigrations(tb))
}

// orderTopic is where most relay tests start: a fresh outbox database,
// a broker, a writer of unsealed events and a collector of the order topic.
type orderTopic struct {
	url    string
	pool   *pgxpool.Pool
	broker *broker.Broker
	w      *outbox.Writer
	c      *collector
}

func startOrderTopic(tb testing.TB) orderTopic {
	tb.Helper()
	url, pool := newOutboxDB(tb)
	b := startBroker(tb, broker.Config{})
	w, err := outbox.NewWriter(nil, nil)
	require.NoError(tb, err)
	return orderTopic{url: url, pool: pool, broker: b, w: w, c: collect(tb, b.Addr(), event.TopicOrder)}
}

// startBroker starts an in-memory development broker, closed at test end.
func startBroker(tb testing.TB, cfg broker.Config) *broker.Broker {
	tb.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	b, err := broker.Start(context.Background(), cfg)
	require.NoError(tb, err)
	tb.Cleanup(b.Close)
	return b
}

// testKeys is the keyring of the tests' writers and relays.
func testKeys(tb testing.TB) *keyring.Keyring {
	tb.Helper()
	k, err := keyring.New("k1", map[string][]byte{"k1": []byte("0123456789abcdef0123456789abcdef")})
	require.NoError(tb, err)
	return k
}

type relayOpts struct {
	id       string
	urls     []string
	cfg      relay.Config
	reg      *prometheus.Registry
	brokers  []string
	keys     *keyring.Keyring
	tracer   func(o *relay.Options)
	logLevel slog.Level
	// logs receives the relay's JSON log lines too (they always go to the
	// test log).
	logs io.Writer
	// wrap, when set, wraps each worker's Kafka publisher (to cut or slow
	// this replica alone).
	wrap func(relay.Publisher) relay.Publisher
	// probe is Options.Probe.
	probe func(context.Context) error
}

// runningRelay is a relay run in-process by a test.
type runningRelay struct {
	r      *relay.Relay
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan struct{}
}

// stop cancels the relay and waits for it to return (lanes released).
func (rr *runningRelay) stop(tb testing.TB) {
	tb.Helper()
	rr.cancel()
	select {
	case <-rr.done:
	case <-time.After(30 * time.Second):
		tb.Fatal("relay did not stop within 30 s")
	}
}

// startRelay runs a relay until the test ends (or stop).
func startRelay(tb testing.TB, o relayOpts) *runningRelay {
	tb.Helper()
	cfg := o.cfg
	if o.id == "" {
		o.id = "test-" + uuid.NewString()[:8]
	}
	cfg.ID = o.id
	cfg.DatabaseURLs = o.urls
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 3 * time.Second
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = time.Second
	}
	if cfg.StatsInterval == 0 {
		cfg.StatsInterval = 200 * time.Millisecond
	}
	reg := o.reg
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	k, err := relay.NewKafka(relay.KafkaConfig{Brokers: o.brokers, ClientID: o.id, BatchBytes: cfg.MaxBatchBytes})
	require.NoError(tb, err)
	keys := o.keys
	if keys == nil {
		keys = testKeys(tb)
	}
	var logTo io.Writer = testWriter{tb}
	if o.logs != nil {
		logTo = io.MultiWriter(logTo, o.logs)
	}
	newPublisher := k.NewPublisher
	if o.wrap != nil {
		newPublisher = func() relay.Publisher { return o.wrap(k.NewPublisher()) }
	}
	opts := relay.Options{
		NewPublisher: newPublisher,
		Probe:        o.probe,
		Keys:         keys,
		Registerer:   reg,
		Logger:       slog.New(slog.NewJSONHandler(logTo, &slog.HandlerOptions{Level: max(o.logLevel, slog.LevelInfo)})).With("relay", o.id),
	}
	if o.tracer != nil {
		o.tracer(&opts)
	}
	r, err := relay.New(cfg, opts)
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	rr := &runningRelay{r: r, reg: reg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(rr.done)
		_ = r.Run(ctx)
		k.Close()
	}()
	tb.Cleanup(func() { rr.stop(tb) })
	return rr
}

// testWriter sends log lines to the test log, only shown on failure or -v.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// writeEvents appends, for each aggregate, versions from..to (inclusive)
// as a service does: business row written first, then the events, in one
// transaction per aggregate and version.
func writeEvents(tb testing.TB, pool *pgxpool.Pool, w *outbox.Writer, aggs []string, from, to int64) {
	tb.Helper()
	ctx := context.Background()
	for v := from; v <= to; v++ {
		tx, err := pool.Begin(ctx)
		require.NoError(tb, err)
		for _, agg := range aggs {
			_, err := tx.Exec(ctx, `INSERT INTO orders (id, version) VALUES ($1, $2)
				ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version`, agg, v)
			require.NoError(tb, err)
			require.NoError(tb, w.Append(ctx, tx, orderEvent(agg, v)))
		}
		require.NoError(tb, tx.Commit(ctx))
	}
}

// bulkInsert inserts n events quickly: perAgg consecutive versions for each
// of n/perAgg aggregates, many rows per statement.
func bulkInsert(tb testing.TB, pool *pgxpool.Pool, w *outbox.Writer, prefix string, n, perAgg int) []string {
	tb.Helper()
	ctx := context.Background()
	var aggs []string
	for i := range n / perAgg {
		aggs = append(aggs, prefix+"-"+strconv.Itoa(i))
	}
	const perTx = 1000
	var events []outbox.Event
	flush := func() {
		tx, err := pool.Begin(ctx)
		require.NoError(tb, err)
		require.NoError(tb, w.Append(ctx, tx, events...))
		require.NoError(tb, tx.Commit(ctx))
		events = events[:0]
	}
	for v := 1; v <= perAgg; v++ {
		for _, agg := range aggs {
			events = append(events, orderEvent(agg, int64(v)))
			if len(events) == perTx {
				flush()
			}
		}
	}
	if len(events) > 0 {
		flush()
	}
	return aggs
}

func orderEvent(agg string, version int64) outbox.Event {
	return outbox.Event{
		Topic:            event.TopicOrder,
		AggregateType:    event.AggregateOrder,
		AggregateID:      agg,
		AggregateVersion: version,
		Type:             event.OrderConfirmed,
		Payload:          wrapperspb.String(fmt.Sprintf("%s@%d", agg, version)),
	}
}

// received is one message read back from Kafka.
type received struct {
	EventID   string
	Aggregate string
	Version   int64
	Partition int
	Offset    int64
	Headers   map[string]string
	Key       string
	Value     []byte
}

// collector reads topics from the beginning (a fresh consumer group) until
// the test ends, keeping every message.
type collector struct {
	mu   sync.Mutex
	msgs []received
}

func collect(tb testing.TB, brokerAddr string, topics ...string) *collector {
	tb.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:     []string{brokerAddr},
		GroupID:     "verify-" + uuid.NewString(),
		GroupTopics: topics,
		StartOffset: kafka.FirstOffset,
		MinBytes:    1,
		MaxBytes:    10 << 20,
		MaxWait:     50 * time.Millisecond,
		// Joining a group takes a rebalance round; keep it short.
		HeartbeatInterval: 500 * time.Millisecond,
		SessionTimeout:    6 * time.Second,
		RebalanceTimeout:  2 * time.Second,
	})
	c := &collector{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				return
			}
			c.add(m)
		}
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
		_ = r.Close()
	})
	return c
}

func (c *collector) add(m kafka.Message) {
	h := map[string]string{}
	for _, x := range m.Headers {
		h[x.Key] = string(x.Value)
	}
	v, _ := strconv.ParseInt(h[event.HeaderAggregateVersion], 10, 64)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, received{
		EventID: h[event.HeaderEventID], Aggregate: h[event.HeaderAggregateID], Version: v,
		Partition: m.Partition, Offset: m.Offset, Headers: h, Key: string(m.Key), Value: m.Value,
	})
}

func (c *collector) all() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// distinct counts the distinct event ids received.
func (c *collector) distinct() int {
	seen := map[string]bool{}
	for _, m := range c.all() {
		seen[m.EventID] = true
	}
	return len(seen)
}

// waitDistinct waits until want distinct events arrived.
func (c *collector) waitDistinct(tb testing.TB, want int, within time.Duration) {
	tb.Helper()
	require.Eventually(tb, func() bool { return c.distinct() >= want }, within, 20*time.Millisecond,
		"want %d distinct events", want)
}

// requireOrderedPerAggregate checks that, ignoring redeliveries of an event
// already seen, each aggregate's versions arrive in increasing order (and
// duplicates are only re-sends of earlier events), and returns the number
// of duplicate deliveries.
func requireOrderedPerAggregate(tb testing.TB, msgs []received) (duplicates int) {
	tb.Helper()
	// Sort by partition and offset: that is the order a consumer sees.
	slices.SortFunc(msgs, func(a, b received) int {
		if a.Partition != b.Partition {
			return a.Partition - b.Partition
		}
		return int(a.Offset - b.Offset)
	})
	seen := map[string]bool{}
	last := map[string]int64{}
	for _, m := range msgs {
		if seen[m.EventID] {
			duplicates++
			continue
		}
		seen[m.EventID] = true
		require.Greater(tb, m.Version, last[m.Aggregate], "aggregate %s: version %d after %d", m.Aggregate, m.Version, last[m.Aggregate])
		last[m.Aggregate] = m.Version
	}
	return duplicates
}

// requireMetric waits for a metric to reach want: the relay counts a
// batch after the statement that marks (or deletes) it returns, so a test
// that has seen the rows change may look a moment too early.
func requireMetric(tb testing.TB, reg *prometheus.Registry, want float64, name string, labels map[string]string, msg ...any) {
	tb.Helper()
	require.Eventually(tb, func() bool { return metricValue(tb, reg, name, labels) == want }, 5*time.Second, 5*time.Millisecond, msg...)
}

// gauge/counter read a metric's value summed over the series matching labels.
func metricValue(tb testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	require.NoError(tb, err)
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// countRows counts outbox rows matching a condition.
func countRows(tb testing.TB, pool *pgxpool.Pool, where string) int {
	tb.Helper()
	var n int
	require.NoError(tb, pool.QueryRow(context.Background(), "SELECT count(*) FROM outbox WHERE "+where).Scan(&n))
	return n
}

var _ = pgx.Identifier{}
