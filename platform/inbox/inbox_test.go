package inbox_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
)

const topic = event.TopicOrder

// migrations are a consuming service's database: the canonical inbox DDL
// (read from db/inbox/schema so that platform does not import db) and an
// effect table without a unique key, so that an event applied twice shows
// as two rows.
func migrations(t *testing.T) fstest.MapFS {
	t.Helper()
	ddl, err := os.ReadFile("../../db/inbox/schema/inbox.sql")
	require.NoError(t, err)
	sealed, err := os.ReadFile("../../db/inbox/schema/inbox_sealed.sql")
	require.NoError(t, err)
	resolution, err := os.ReadFile("../../db/inbox/schema/inbox_resolution.sql")
	require.NoError(t, err)
	return fstest.MapFS{
		"000001_inbox.up.sql":        {Data: ddl},
		"000001_inbox.down.sql":      {Data: []byte("DROP TABLE inbox, inbox_versions, inbox_parked;")},
		"000002_sealed.up.sql":       {Data: sealed},
		"000002_sealed.down.sql":     {Data: []byte("ALTER TABLE inbox_parked DROP COLUMN key_id;")},
		"000003_effects.up.sql":      {Data: []byte("CREATE TABLE effects (event_id UUID NOT NULL, aggregate_id TEXT NOT NULL, version BIGINT NOT NULL, seq BIGINT GENERATED ALWAYS AS IDENTITY);")},
		"000003_effects.down.sql":    {Data: []byte("DROP TABLE effects;")},
		"000004_resolution.up.sql":   {Data: resolution},
		"000004_resolution.down.sql": {Data: []byte("SELECT 1;")},
	}
}

// startBroker runs a one-node kfake cluster (what the development broker
// wraps; platform does not import devbroker, which imports platform) with
// topic seeded with partitions partitions.
func startBroker(t *testing.T, partitions int32) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

// msg is an event as the relay publishes it.
type msg struct {
	id      uuid.UUID
	agg     string
	version int64
	body    string
	typ     string // default order.confirmed.v1
}

func newMsg(agg string, version int64, body string) msg {
	return msg{id: uuid.New(), agg: agg, version: version, body: body}
}

func (m msg) kafka() kafka.Message {
	typ := m.typ
	if typ == "" {
		typ = event.OrderConfirmed
	}
	return kafka.Message{
		Key:   []byte(m.agg),
		Value: []byte(m.body),
		Headers: []kafka.Header{
			{Key: event.HeaderEventID, Value: []byte(m.id.String())},
			{Key: event.HeaderEventType, Value: []byte(typ)},
			{Key: event.HeaderAggregateType, Value: []byte(event.AggregateOrder)},
			{Key: event.HeaderAggregateID, Value: []byte(m.agg)},
			{Key: event.HeaderAggregateVersion, Value: []byte(strconv.FormatInt(m.version, 10))},
			{Key: event.HeaderOccurredAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
			{Key: event.HeaderContentType, Value: []byte(event.ContentTypeProtobuf)},
			{Key: event.HeaderTraceparent, Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
		},
	}
}

func produce(t *testing.T, addr string, msgs ...msg) {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer func() { _ = w.Close() }()
	out := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		out[i] = m.kafka()
	}
	require.NoError(t, w.WriteMessages(context.Background(), out...))
}

// testLog sends log lines to the test log (shown on failure or -v).
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

type bundle struct {
	addr  string
	keys  *keyring.Keyring // seal parked payloads
	pool  *pgxpool.Pool
	reg   *prometheus.Registry
	group string
	types []string // Config.Types of the consumers run starts
}

func setup(t *testing.T, partitions int32) *bundle {
	t.Helper()
	_, pool := pgtest.NewDatabase(t, migrations(t))
	return &bundle{addr: startBroker(t, partitions), keys: servicetest.Keyring(t, "p1"), pool: pool, reg: prometheus.NewRegistry(), group: "g-" + uuid.NewString()[:8]}
}

// recordEffect is the handler's effect: one row per application.
func recordEffect(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
	_, err := tx.Exec(ctx, "INSERT INTO effects (event_id, aggregate_id, version) VALUES ($1, $2, $3)", ev.ID, ev.AggregateID, ev.AggregateVersion)
	return err
}

// run starts a consumer until the test ends or the returned stop is called.
func (b *bundle) run(t *testing.T, h inbox.Handler, edit func(*inbox.Consumer), opts ...func(*inbox.Options)) (stop func()) {
	t.Helper()
	o := inbox.Options{Registerer: b.reg, Logger: slog.New(slog.NewJSONHandler(testLog{t}, nil)), Keys: b.keys}
	for _, f := range opts {
		f(&o)
	}
	c, err := inbox.New(inbox.Config{
		Brokers: []string{b.addr}, GroupID: b.group, Topics: []string{topic}, Consumer: "projector", Types: b.types,
		BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond, MaxWait: 50 * time.Millisecond,
	}, b.pool, h, o)
	require.NoError(t, err)
	if edit != nil {
		edit(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(20 * time.Second):
				t.Error("consumer did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// results returns how many messages were processed with result.
func (b *bundle) results(t *testing.T, result string) float64 {
	t.Helper()
	return b.series(t, "inbox_processed_total", "result", result)
}

// waitProcessed waits until n messages were processed, whatever the result.
func (b *bundle) waitProcessed(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		var sum float64
		for _, r := range []string{inbox.ResultApplied, inbox.ResultDuplicate, inbox.ResultStale, inbox.ResultParked, inbox.ResultIgnored} {
			sum += b.results(t, r)
		}
		return sum >= float64(n)
	}, 20*time.Second, 10*time.Millisecond, "want %d processed", n)
}

// metric returns the value of the counter or gauge name of consumer
// "projector" with the label pairs given (0 when it has no such series).
func (b *bundle) metric(t *testing.T, name string, pairs ...string) float64 {
	t.Helper()
	return b.series(t, name, append([]string{"consumer", "projector"}, pairs...)...)
}

// series returns the value of the first series of the counter or gauge
// name that has every label of pairs, given as name, value pairs (0 when
// there is none).
func (b *bundle) series(t *testing.T, name string, pairs ...string) float64 {
	t.Helper()
	v, _ := servicetest.LookupMetric(t, b.reg, name, pairs...)
	return v
}

func (b *bundle) effects(t *testing.T, id uuid.UUID) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT count(*) FROM effects WHERE event_id = $1", id).Scan(&n))
	return n
}

func TestConsumerAppliesEachEventOnceAndSkipsDuplicates(t *testing.T) {
	t.Parallel()
	b := setup(t, 3)
	var msgs []msg
	for v := int64(1); v <= 5; v++ {
		for a := range 4 {
			msgs = append(msgs, newMsg("order-"+strconv.Itoa(a), v, "x"))
		}
	}
	produce(t, b.addr, msgs...)
	produce(t, b.addr, msgs[:7]...) // redelivered by an at-least-once relay

	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var mu sync.Mutex
	perAgg := map[string][]int64{}
	b.run(t, func(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
		require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", trace.SpanContextFromContext(ctx).TraceID().String(), "trace continued")
		require.Equal(t, event.OrderConfirmed, ev.Type)
		require.Equal(t, topic, ev.Topic)
		require.WithinDuration(t, time.Now(), ev.OccurredAt, time.Minute)
		mu.Lock()
		perAgg[ev.AggregateID] = append(perAgg[ev.AggregateID], ev.AggregateVersion)
		mu.Unlock()
		return recordEffect(ctx, tx, ev)
	}, nil, func(o *inbox.Options) { o.TracerProvider = tp })

	b.waitProcessed(t, len(msgs)+7)
	require.Equal(t, float64(len(msgs)), b.results(t, inbox.ResultApplied))
	require.Equal(t, 7.0, b.results(t, inbox.ResultDuplicate))
	for _, m := range msgs {
		require.Equal(t, 1, b.effects(t, m.id), "event %s applied once", m.id)
	}
	mu.Lock()
	for agg, versions := range perAgg {
		require.Equal(t, []int64{1, 2, 3, 4, 5}, versions, "aggregate %s in order", agg)
	}
	mu.Unlock()
	// A message's span ends right after it is counted.
	require.Eventually(t, func() bool { return len(spans.Ended()) == len(msgs)+7 }, 5*time.Second, 5*time.Millisecond, "a span per message")
}

// Partitions are applied concurrently: the first event handled waits for
// an event of another partition, which a consumer applying one message at a
// time would never deliver.
func TestConsumerAppliesPartitionsConcurrently(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	var msgs []msg
	for a := range 8 { // eight keys: both partitions get some (kafka.Hash is deterministic)
		msgs = append(msgs, newMsg("order-"+strconv.Itoa(a), 1, "x"))
	}
	produce(t, b.addr, msgs...)

	var (
		mu         sync.Mutex
		first      = -1
		otherSeen  = make(chan struct{})
		partitions = map[int]bool{}
		waitedOut  bool
	)
	b.run(t, func(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
		mu.Lock()
		partitions[ev.Partition] = true
		isFirst := first < 0
		if isFirst {
			first = ev.Partition
		} else if ev.Partition != first && len(partitions) == 2 && !waitedOut {
			select {
			case <-otherSeen:
			default:
				close(otherSeen)
			}
		}
		mu.Unlock()
		if isFirst {
			select {
			case <-otherSeen:
			case <-time.After(10 * time.Second):
				mu.Lock()
				waitedOut = true
				mu.Unlock()
			}
		}
		return recordEffect(ctx, tx, ev)
	}, nil)

	b.waitProcessed(t, len(msgs))
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, partitions, 2, "the keys cover both partitions")
	require.False(t, waitedOut, "the other partition was not applied while the first was busy")
	for _, m := range msgs {
		require.Equal(t, 1, b.effects(t, m.id))
	}
}

// A consumer of some event types skips the others without a transaction:
// no inbox row, no handler call, and their offsets are committed.
func TestConsumerIgnoresTypesItDoesNotApply(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	b.types = []string{event.OrderCreated}
	created := newMsg("order-1", 1, "a")
	created.typ = event.OrderCreated
	confirmed := newMsg("order-1", 2, "b")
	produce(t, b.addr, created, confirmed)

	var mu sync.Mutex
	var handled []string
	h := func(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
		mu.Lock()
		handled = append(handled, ev.Type)
		mu.Unlock()
		return recordEffect(ctx, tx, ev)
	}
	stop := b.run(t, h, nil)
	b.waitProcessed(t, 2)
	stop()
	require.Equal(t, 1.0, b.results(t, inbox.ResultApplied))
	require.Equal(t, 1.0, b.results(t, inbox.ResultIgnored))
	require.Equal(t, 1, b.effects(t, created.id))
	require.Zero(t, b.effects(t, confirmed.id))
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT count(*) FROM inbox WHERE event_id = $1", confirmed.id).Scan(&n))
	require.Zero(t, n, "an ignored event leaves no inbox row")

	// Both offsets were committed: the group's next consumer starts after
	// them and sees only the new event.
	next := newMsg("order-2", 1, "c")
	next.typ = event.OrderCreated
	produce(t, b.addr, next)
	b.run(t, h, nil)
	b.waitProcessed(t, 3)
	require.Equal(t, 2.0, b.results(t, inbox.ResultApplied))
	require.Equal(t, 1.0, b.results(t, inbox.ResultIgnored))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{event.OrderCreated, event.OrderCreated}, handled)
}

func TestConsumerSkipsEventsOlderThanTheAppliedVersion(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	v3, v2, v4 := newMsg("order-1", 3, "x"), newMsg("order-1", 2, "x"), newMsg("order-1", 4, "x")
	produce(t, b.addr, v3, v2, v4)
	b.run(t, recordEffect, nil)
	b.waitProcessed(t, 3)
	require.Equal(t, 1.0, b.results(t, inbox.ResultStale))
	require.Equal(t, 1, b.effects(t, v3.id))
	require.Zero(t, b.effects(t, v2.id), "stale event not applied")
	require.Equal(t, 1, b.effects(t, v4.id))
	// The stale event is recorded: a redelivery is a duplicate.
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT count(*) FROM inbox WHERE event_id = $1", v2.id).Scan(&n))
	require.Equal(t, 1, n)
}

// A poison event (a permanent error, an envelope that does not decode) is
// parked with its error and the partition goes on; later events of the same
// aggregate are parked behind it (order), other aggregates are applied. A
// transient failure is retried, not parked.
func TestConsumerParksPoisonEventsWithoutBlockingThePartition(t *testing.T) {
	t.Parallel()
	b := setup(t, 1) // one partition: a blocked partition would block everything
	poison := newMsg("order-p", 1, "poison")
	behind := newMsg("order-p", 2, "fine")
	bad := kafka.Message{Key: []byte("order-x"), Value: []byte("no envelope")}
	flaky := newMsg("order-f", 1, "flaky")
	var others []msg
	for i := range 5 {
		others = append(others, newMsg("order-"+strconv.Itoa(i), 1, "fine"))
	}
	produce(t, b.addr, poison, others[0], behind, others[1], flaky, others[2])
	w := &kafka.Writer{Addr: kafka.TCP(b.addr), Topic: topic, BatchTimeout: time.Millisecond}
	require.NoError(t, w.WriteMessages(context.Background(), bad))
	require.NoError(t, w.Close())
	produce(t, b.addr, others[3:]...)

	var mu sync.Mutex
	calls := map[string]int{}
	b.run(t, func(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
		mu.Lock()
		calls[string(ev.Payload)]++
		n := calls[string(ev.Payload)]
		mu.Unlock()
		switch string(ev.Payload) {
		case "poison":
			return inbox.Permanent(errors.New("cannot apply: invariant violated"))
		case "flaky":
			if n < 3 {
				return errors.New("transient: peer unavailable")
			}
		}
		return recordEffect(ctx, tx, ev)
	}, nil)

	b.waitProcessed(t, 9)
	require.Equal(t, 3.0, b.results(t, inbox.ResultParked), "poison, the event behind it, the bad envelope")
	require.Equal(t, 6.0, b.results(t, inbox.ResultApplied), "five others, flaky after retries")
	for _, m := range others {
		require.Equal(t, 1, b.effects(t, m.id))
	}
	require.Equal(t, 1, b.effects(t, flaky.id))
	mu.Lock()
	require.Equal(t, 1, calls["poison"], "a permanent error is parked at once, never retried")
	require.Equal(t, 3, calls["flaky"])
	require.Zero(t, calls["no envelope"], "never handled")
	mu.Unlock()
	require.Zero(t, b.effects(t, behind.id), "held behind the parked event")

	rows, err := b.pool.Query(context.Background(), `SELECT event_id, aggregate_id, error, payload, key_id, headers->>'event-id', kafka_partition, kafka_offset
		FROM inbox_parked WHERE resolved_at IS NULL ORDER BY id`)
	require.NoError(t, err)
	type parked struct {
		ID        uuid.UUID
		Agg, Err  string
		Payload   []byte
		HeaderID  *string
		Partition int32
		Offset    int64
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (parked, error) {
		var (
			p      parked
			sealed []byte
			kid    string
		)
		if err := r.Scan(&p.ID, &p.Agg, &p.Err, &sealed, &kid, &p.HeaderID, &p.Partition, &p.Offset); err != nil {
			return p, err
		}
		require.Equal(t, "p1", kid, "sealed under the active key")
		require.NotContains(t, string(sealed), "poison", "never in the clear")
		p.Payload, err = inbox.OpenParked(b.keys, "projector", p.ID, kid, sealed)
		return p, err
	})
	require.NoError(t, err)
	require.Len(t, got, 3)
	require.Equal(t, poison.id, got[0].ID)
	require.Contains(t, got[0].Err, "invariant violated")
	require.Equal(t, "poison", string(got[0].Payload))
	require.Equal(t, poison.id.String(), *got[0].HeaderID)
	require.Equal(t, behind.id, got[1].ID)
	require.Contains(t, got[1].Err, "held behind parked event "+poison.id.String())
	require.Equal(t, "order-x", got[2].Agg)
	require.Contains(t, got[2].Err, "bad event envelope")
	require.Nil(t, got[2].HeaderID)
}

// Offsets are committed only after the effect: a consumer that dies between
// the two gets the message again, and the inbox turns it into a duplicate.
func TestConsumerCommitsOffsetsOnlyAfterTheEffect(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	msgs := []msg{newMsg("order-1", 1, "a"), newMsg("order-1", 2, "b"), newMsg("order-2", 1, "c")}
	produce(t, b.addr, msgs...)

	// The first consumer "dies" right after the second event's
	// transaction committed, before its offset commit.
	ctx := context.Background()
	first, err := inbox.New(inbox.Config{
		Brokers: []string{b.addr}, GroupID: b.group, Topics: []string{topic}, Consumer: "projector",
		MaxWait: 50 * time.Millisecond,
	}, b.pool, recordEffect, inbox.Options{Registerer: b.reg, Keys: b.keys})
	require.NoError(t, err)
	inbox.SetAfterEffect(first, func(ev inbox.Event) bool { return ev.ID == msgs[1].id })
	require.NoError(t, first.Run(ctx))
	require.Equal(t, 1, b.effects(t, msgs[1].id), "effect committed before the crash")
	require.Zero(t, b.effects(t, msgs[2].id), "stopped before the third event")
	require.Equal(t, 2.0, b.results(t, inbox.ResultApplied))

	// Its successor in the group gets the second event again: skipped as a
	// duplicate, not applied twice.
	b.run(t, recordEffect, nil)
	b.waitProcessed(t, 4)
	require.Equal(t, 1.0, b.results(t, inbox.ResultDuplicate))
	require.Equal(t, 3.0, b.results(t, inbox.ResultApplied))
	for _, m := range msgs {
		require.Equal(t, 1, b.effects(t, m.id))
	}
}

// A transient failure (anything not wrapped with Permanent: a database
// restarting, a peer unavailable) is retried with capped backoff for as
// long as it lasts — here far longer than the five attempts after which it
// used to be parked, leaving its order PENDING for ever (issue 10) — and the
// event is then applied, not parked. Its partition waits meanwhile, so the
// order of the aggregate's events and of the partition holds. Alerting, not
// parking, bounds the wait: every retry is counted, and a gauge shows how
// long the oldest failing event has been retried.
func TestConsumerRetriesTransientErrorsUntilTheySucceed(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	flaky := newMsg("order-f", 1, "flaky")
	next := newMsg("order-f", 2, "next")   // same aggregate
	other := newMsg("order-o", 1, "other") // same partition
	produce(t, b.addr, flaky, next, other)

	const failures = 20
	recovered := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	b.run(t, func(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
		if string(ev.Payload) == "flaky" {
			mu.Lock()
			calls++
			n := calls
			mu.Unlock()
			select {
			case <-recovered:
			default:
				return fmt.Errorf("attempt %d: %w", n, errors.New("conn refused: the database is restarting"))
			}
		}
		return recordEffect(ctx, tx, ev)
	}, nil)

	require.Eventually(t, func() bool { return b.metric(t, "inbox_retries_total") >= failures }, 20*time.Second, 5*time.Millisecond,
		"every failed attempt is counted")
	require.Positive(t, b.metric(t, "inbox_retry_streak_seconds"), "the failing streak shows while it lasts")
	require.Zero(t, b.results(t, inbox.ResultParked), "a transient error is never parked")
	require.Zero(t, b.effects(t, next.id)+b.effects(t, other.id), "the partition waits for the failing event")
	close(recovered)

	b.waitProcessed(t, 3)
	require.Equal(t, 3.0, b.results(t, inbox.ResultApplied))
	require.Zero(t, b.results(t, inbox.ResultParked))
	rows, err := b.pool.Query(context.Background(), "SELECT event_id FROM effects ORDER BY seq")
	require.NoError(t, err)
	applied, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	require.NoError(t, err)
	require.Equal(t, []uuid.UUID{flaky.id, next.id, other.id}, applied, "applied once each, in partition order")
	require.Eventually(t, func() bool { return b.metric(t, "inbox_retry_streak_seconds") == 0 }, 5*time.Second, 5*time.Millisecond,
		"the streak ends with the success")
	mu.Lock()
	defer mu.Unlock()
	require.GreaterOrEqual(t, calls, failures+1)
}

// A permanent error — wrapped with Permanent, or an event that does not
// decode — can never be applied: it is parked at the first attempt, with no
// retry counted.
func TestConsumerParksPermanentErrorsAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	poison := newMsg("order-p", 1, "poison")
	fine := newMsg("order-q", 1, "fine")
	produce(t, b.addr, poison, fine)
	var mu sync.Mutex
	calls := 0
	b.run(t, func(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
		if string(ev.Payload) == "poison" {
			mu.Lock()
			calls++
			mu.Unlock()
			return fmt.Errorf("apply: %w", inbox.Permanent(errors.New("unknown currency XXX")))
		}
		return recordEffect(ctx, tx, ev)
	}, nil)
	b.waitProcessed(t, 2)
	require.Equal(t, 1.0, b.results(t, inbox.ResultParked))
	require.Equal(t, 1.0, b.results(t, inbox.ResultApplied))
	require.Equal(t, 1, b.effects(t, fine.id))
	require.Zero(t, b.metric(t, "inbox_retries_total"))
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, 1, calls)
}

// Work registered with AfterCommit runs after the event's transaction
// committed — it sees the effect from another connection, even on a pool of
// one connection, which the transaction would starve — and before the
// offset commit; an attempt that rolls back drops what it registered.
func TestAfterCommitRunsOnceTheEffectCommitted(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	cfg := b.pool.Config().Copy()
	cfg.MaxConns = 1
	one, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(one.Close)
	b.pool = one

	first, second := newMsg("order-1", 1, "a"), newMsg("order-2", 1, "b")
	produce(t, b.addr, first, second)
	require.ErrorIs(t, inbox.AfterCommit(context.Background(), func(context.Context) {}), inbox.ErrNotInHandler)

	var mu sync.Mutex
	attempts := map[uuid.UUID]int{}
	seen := map[uuid.UUID][]int{} // effects visible to each hook run, by attempt
	b.run(t, func(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
		mu.Lock()
		attempts[ev.ID]++
		n := attempts[ev.ID]
		mu.Unlock()
		require.NoError(t, inbox.AfterCommit(ctx, func(ctx context.Context) {
			require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", trace.SpanContextFromContext(ctx).TraceID().String(), "the event's context")
			var effects int
			// A second statement on the pool of one: the transaction has
			// released its connection.
			require.NoError(t, one.QueryRow(ctx, "SELECT count(*) FROM effects WHERE event_id = $1", ev.ID).Scan(&effects))
			mu.Lock()
			seen[ev.ID] = append(seen[ev.ID], n, effects)
			mu.Unlock()
		}))
		if err := recordEffect(ctx, tx, ev); err != nil {
			return err
		}
		if ev.ID == first.id && n == 1 {
			return errors.New("transient: rolled back after registering")
		}
		return nil
	}, nil)
	b.waitProcessed(t, 2)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []int{2, 1}, seen[first.id], "only the committed attempt's hook ran, after the commit")
	require.Equal(t, []int{1, 1}, seen[second.id])
}
