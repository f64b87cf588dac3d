package relay_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/relay"
)

func TestRelayPublishesEveryEventWithItsEnvelope(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newOutboxDB(t)
	b := startBroker(t, broker.Config{})
	keys := testKeys(t)
	w, err := outbox.NewWriter(keys, nil)
	require.NoError(t, err)

	// A traced writer: the relay must continue its trace.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })
	wctx, writeSpan := tp.Tracer("test").Start(ctx, "PlaceOrder")

	const aggs, versions = 20, 5
	var ids []string
	for i := range aggs {
		ids = append(ids, fmt.Sprintf("order-%d-%s", i, uuid.NewString()[:6]))
	}
	tx, err := pool.Begin(wctx)
	require.NoError(t, err)
	for v := int64(1); v <= versions; v++ {
		for _, agg := range ids {
			e := orderEvent(agg, v)
			e.PII = v == 1 // the first event of each order carries personal data
			require.NoError(t, w.Append(wctx, tx, e))
		}
	}
	require.NoError(t, tx.Commit(wctx))
	writeSpan.End()

	c := collect(t, b.Addr(), event.TopicOrder)
	rr := startRelay(t, relayOpts{urls: []string{url}, brokers: []string{b.Addr()}, keys: keys,
		tracer: func(o *relay.Options) { o.TracerProvider = tp }})

	c.waitDistinct(t, aggs*versions, 20*time.Second)
	msgs := c.all()
	require.Len(t, msgs, aggs*versions, "each event exactly once")
	require.Zero(t, requireOrderedPerAggregate(t, msgs))

	// Every row is marked published, none parked.
	require.Eventually(t, func() bool { return countRows(t, pool, "published_at IS NULL") == 0 }, 5*time.Second, 20*time.Millisecond)
	require.Zero(t, countRows(t, pool, "parked_at IS NOT NULL"))

	var rec outbox.Record
	row, err := pool.Query(ctx, `SELECT id, event_id, lane, topic, aggregate_type, aggregate_id, aggregate_version,
		event_type, content_type, payload, key_id, traceparent, tracestate, occurred_at, attempts
		FROM outbox WHERE aggregate_id = $1 AND aggregate_version = 1`, ids[0])
	require.NoError(t, err)
	rec, err = pgx.CollectExactlyOneRow(row, pgx.RowToStructByName[outbox.Record])
	require.NoError(t, err)
	require.Equal(t, "k1", rec.KeyID, "stored sealed")

	for _, m := range msgs {
		require.Equal(t, m.Aggregate, m.Key, "key = aggregate id")
		h := m.Headers
		_, err := uuid.Parse(h[event.HeaderEventID])
		require.NoError(t, err)
		require.Equal(t, event.OrderConfirmed, h[event.HeaderEventType])
		require.Equal(t, event.AggregateOrder, h[event.HeaderAggregateType])
		require.Equal(t, event.ContentTypeProtobuf, h[event.HeaderContentType])
		occurred, err := time.Parse(time.RFC3339Nano, h[event.HeaderOccurredAt])
		require.NoError(t, err)
		require.WithinDuration(t, time.Now(), occurred, time.Minute)
		// The payload arrives decrypted, PII or not.
		var body wrapperspb.StringValue
		require.NoError(t, proto.Unmarshal(m.Value, &body))
		require.Equal(t, fmt.Sprintf("%s@%d", m.Aggregate, m.Version), body.GetValue())
		// The trace continues: same trace, a child span of the writer's
		// request (the relay's outbox.publish span).
		sc := traceparentContext(t, h[event.HeaderTraceparent])
		require.Equal(t, writeSpan.SpanContext().TraceID(), sc.TraceID())
		require.NotEqual(t, writeSpan.SpanContext().SpanID(), sc.SpanID())
	}
	requireMetric(t, rr.reg, float64(aggs*versions), "outbox_published_total", map[string]string{"topic": event.TopicOrder})
	requireMetric(t, rr.reg, float64(aggs*versions), "outbox_publish_lag_seconds", nil, "one lag sample per event")
	// A row's span ends right after its samples.
	publishSpans := func() []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range spans.Ended() {
			if s.Name() == "outbox.publish" {
				out = append(out, s)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(publishSpans()) == aggs*versions }, 5*time.Second, 5*time.Millisecond)
	for _, s := range publishSpans() {
		require.Equal(t, writeSpan.SpanContext().SpanID(), s.Parent().SpanID())
		require.Equal(t, trace.SpanKindProducer, s.SpanKind())
	}

	require.Equal(t, float64(outbox.Lanes), metricValue(t, rr.reg, "outbox_lanes_owned", nil), "a lone replica leases every lane")
	require.Eventually(t, func() bool {
		return metricValue(t, rr.reg, "outbox_table_size", map[string]string{"state": "published"}) == aggs*versions
	}, 5*time.Second, 20*time.Millisecond)
}

func traceparentContext(t *testing.T, tp string) trace.SpanContext {
	t.Helper()
	parts := strings.Split(tp, "-")
	require.Len(t, parts, 4, "traceparent %q", tp)
	tid, err := trace.TraceIDFromHex(parts[1])
	require.NoError(t, err)
	sid, err := trace.SpanIDFromHex(parts[2])
	require.NoError(t, err)
	return trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid})
}

// The BIGSERIAL trap: transaction A takes a lower id but commits after B,
// whose higher id is published first. A relay that remembered "the highest
// id published" would skip A's event forever.
func TestRelayPublishesARowCommittedAfterAHigherID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := startOrderTopic(t)
	startRelay(t, relayOpts{urls: []string{e.url}, brokers: []string{e.broker.Addr()},
		// Polling alone would not find A either if it were skipped; a
		// short interval makes a skip show quickly.
		cfg: relay.Config{PollInterval: 50 * time.Millisecond}})

	aggA, aggB := "order-A-"+uuid.NewString(), "order-B-"+uuid.NewString()
	txA, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, e.w.Append(ctx, txA, orderEvent(aggA, 1)))
	var idA int64
	require.NoError(t, txA.QueryRow(ctx, "SELECT id FROM outbox WHERE aggregate_id = $1", aggA).Scan(&idA))

	txB, err := e.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, e.w.Append(ctx, txB, orderEvent(aggB, 1)))
	var idB int64
	require.NoError(t, txB.QueryRow(ctx, "SELECT id FROM outbox WHERE aggregate_id = $1", aggB).Scan(&idB))
	require.Less(t, idA, idB)
	require.NoError(t, txB.Commit(ctx))

	e.c.waitDistinct(t, 1, 10*time.Second)
	require.Equal(t, aggB, e.c.all()[0].Aggregate)
	// B is marked published while A is still invisible.
	require.Eventually(t, func() bool { return countRows(t, e.pool, "published_at IS NOT NULL") == 1 }, 5*time.Second, 10*time.Millisecond)

	require.NoError(t, txA.Commit(ctx))
	e.c.waitDistinct(t, 2, 10*time.Second)
	require.Equal(t, aggA, e.c.all()[1].Aggregate)
	require.Eventually(t, func() bool { return countRows(t, e.pool, "published_at IS NULL") == 0 }, 5*time.Second, 10*time.Millisecond)
}

// Parking policy: a message the broker refuses for good is parked with its
// error and counted; the rest of the batch, and the later events of the
// same aggregate, are published without it.
func TestRelayParksWhatTheBrokerRejectsAndGoesOn(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newOutboxDB(t)
	b := startBroker(t, broker.Config{})
	// The topic accepts at most 16 KiB per record batch; the relay itself
	// allows 1 MiB, so only the broker can refuse.
	setTopicConfig(t, b.Addr(), event.TopicOrder, "max.message.bytes", "16384")
	// The second relay case: a message larger than the relay's own limit
	// is parked before it is sent.
	w, err := outbox.NewWriter(nil, nil)
	require.NoError(t, err)

	agg, other := "order-big-"+uuid.NewString(), "order-small-"+uuid.NewString()
	big := orderEvent(agg, 2)
	big.Payload = wrapperspb.String(strings.Repeat("x", 40<<10))
	huge := orderEvent(agg, 4)
	huge.Payload = wrapperspb.String(strings.Repeat("y", 300<<10))
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, w.Append(ctx, tx, orderEvent(agg, 1), orderEvent(other, 1), big, orderEvent(other, 2), orderEvent(agg, 3), huge, orderEvent(agg, 5)))
	require.NoError(t, tx.Commit(ctx))

	c := collect(t, b.Addr(), event.TopicOrder)
	rr := startRelay(t, relayOpts{urls: []string{url}, brokers: []string{b.Addr()},
		cfg: relay.Config{MaxBatchBytes: 256 << 10}})

	c.waitDistinct(t, 5, 15*time.Second)
	require.Eventually(t, func() bool { return countRows(t, pool, "parked_at IS NOT NULL") == 2 }, 5*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return countRows(t, pool, "published_at IS NULL AND parked_at IS NULL") == 0 },
		5*time.Second, 10*time.Millisecond, "nothing left pending")

	var versions []int64
	for _, m := range c.all() {
		if m.Aggregate == agg {
			versions = append(versions, m.Version)
		}
	}
	require.Equal(t, []int64{1, 3, 5}, versions, "later events of the aggregate go on, in order")
	require.Zero(t, requireOrderedPerAggregate(t, c.all()))

	rows, err := pool.Query(ctx, `SELECT aggregate_version, last_error, attempts FROM outbox WHERE parked_at IS NOT NULL ORDER BY id`)
	require.NoError(t, err)
	type parked struct {
		Version  int64
		Error    string
		Attempts int32
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (parked, error) {
		var p parked
		return p, r.Scan(&p.Version, &p.Error, &p.Attempts)
	})
	require.NoError(t, err)
	require.Len(t, got, 2)
	require.Equal(t, int64(2), got[0].Version)
	require.Contains(t, got[0].Error, "rejected")
	require.Equal(t, int64(4), got[1].Version)
	require.Contains(t, got[1].Error, "too_large")
	require.Equal(t, 1.0, metricValue(t, rr.reg, "outbox_failed_events_total", map[string]string{"reason": "rejected"}))
	require.Equal(t, 1.0, metricValue(t, rr.reg, "outbox_failed_events_total", map[string]string{"reason": "too_large"}))
	require.Equal(t, 2.0, metricValue(t, rr.reg, "outbox_relay_rows_total", map[string]string{"operation": "parked"}))
	require.Eventually(t, func() bool {
		return metricValue(t, rr.reg, "outbox_table_size", map[string]string{"state": "parked"}) == 2
	}, 5*time.Second, 20*time.Millisecond)
}

// setTopicConfig sets a topic configuration on the broker.
func setTopicConfig(t *testing.T, addr, topic, key, value string) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 5 * time.Second}
	resp, err := client.AlterConfigs(context.Background(), &kafka.AlterConfigsRequest{
		Resources: []kafka.AlterConfigRequestResource{{
			ResourceType: kafka.ResourceTypeTopic,
			ResourceName: topic,
			Configs:      []kafka.AlterConfigRequestConfig{{Name: key, Value: value}},
		}},
	})
	require.NoError(t, err)
	for _, e := range resp.Errors {
		require.NoError(t, e)
	}
}

func TestRelayJanitorKeepsTheTableBounded(t *testing.T) {
	t.Parallel()
	url, pool := newOutboxDB(t)
	b := startBroker(t, broker.Config{})
	w, err := outbox.NewWriter(nil, nil)
	require.NoError(t, err)
	rr := startRelay(t, relayOpts{urls: []string{url}, brokers: []string{b.Addr()},
		cfg: relay.Config{Retention: 200 * time.Millisecond, JanitorInterval: 50 * time.Millisecond}})

	// Constant load: rows keep arriving while the janitor deletes.
	total := 0
	for round := range 10 {
		bulkInsert(t, pool, w, fmt.Sprintf("janitor-%d", round), 1000, 1)
		total += 1000
		// Older rounds are deleted while new rows arrive: the table never
		// holds much more than one retention's worth.
		require.Eventually(t, func() bool { return countRows(t, pool, "true") <= 1000 }, 10*time.Second, 10*time.Millisecond,
			"table bounded under constant load")
	}
	require.Eventually(t, func() bool { return countRows(t, pool, "true") == 0 }, 10*time.Second, 20*time.Millisecond,
		"every published row deleted after the retention")
	requireMetric(t, rr.reg, float64(total), "outbox_deleted_total", nil)
	requireMetric(t, rr.reg, float64(total), "outbox_published_total", nil)
	// The access pattern: every row marked and deleted once, read at
	// least once.
	requireMetric(t, rr.reg, float64(total), "outbox_relay_rows_total", map[string]string{"operation": "deleted"})
	requireMetric(t, rr.reg, float64(total), "outbox_relay_rows_total", map[string]string{"operation": "published"})
	require.GreaterOrEqual(t, metricValue(t, rr.reg, "outbox_relay_rows_total", map[string]string{"operation": "read"}), float64(total))
}

// One database that does not exist yet (its service has not started) does
// not stop the others; once it is created and migrated, its events flow.
func TestRelayKeepsGoingWhenADatabaseIsMissing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newOutboxDB(t)
	b := startBroker(t, broker.Config{})
	w, err := outbox.NewWriter(nil, nil)
	require.NoError(t, err)

	missing := strings.Replace(url, pgtest.Prefix, pgtest.Prefix+"late_", 1)
	c := collect(t, b.Addr(), event.TopicOrder)
	rr := startRelay(t, relayOpts{urls: []string{missing, url}, brokers: []string{b.Addr()},
		cfg: relay.Config{BackoffMax: 200 * time.Millisecond}})

	bulkInsert(t, pool, w, "present", 100, 1)
	c.waitDistinct(t, 100, 10*time.Second)
	require.NoError(t, rr.r.Ready(ctx), "one database is enough to be ready")

	// The late service creates its database (a copy of a migrated one).
	_, late := createDatabaseAt(t, missing)
	bulkInsert(t, late, w, "late", 100, 1)
	c.waitDistinct(t, 200, 20*time.Second)
}

// createDatabaseAt creates the database named in url with the outbox schema,
// dropped at test end.
func createDatabaseAt(t *testing.T, url string) (string, *pgxpool.Pool) {
	t.Helper()
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	name := cfg.Database
	_, tpl := newOutboxDB(t) // a migrated database to copy the schema from
	var tplName string
	require.NoError(t, tpl.QueryRow(ctx, "SELECT current_database()").Scan(&tplName))
	tpl.Close()
	admin, err := pgx.Connect(ctx, pgtest.ServerURL())
	require.NoError(t, err)
	defer admin.Close(ctx)
	require.Eventually(t, func() bool {
		_, err = admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", pgx.Identifier{name}.Sanitize(), pgx.Identifier{tplName}.Sanitize()))
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "create database: %v", err)
	t.Cleanup(func() {
		a, err := pgx.Connect(context.Background(), pgtest.ServerURL())
		if err == nil {
			_, _ = a.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			_ = a.Close(context.Background())
		}
	})
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return url, pool
}

var _ = prometheus.NewRegistry
