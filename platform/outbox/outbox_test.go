package outbox_test

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/servicetest"
)

func TestLane(t *testing.T) {
	t.Parallel()

	t.Run("is FNV-1a 32 modulo Lanes, frozen", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, 32, outbox.Lanes)
		// Golden values: if these change, stored rows are in the wrong lanes.
		golden := map[string]int16{
			"":                                     5,  // 0x811c9dc5
			"a":                                    12, // 0xe40c292c
			"order-1":                              13, // 0x2b7fcd6d
			"order-2":                              20, // 0x287fc8b4
			"3f2b8c1e-7d44-4e0a-9a51-0c6f1d2e9b77": 2,  // 0x3e0d6542
			"ordre-ü":                              19, // 0x2a7b5a13
		}
		for id, want := range golden {
			require.Equal(t, want, outbox.Lane(id), "lane of %q", id)
		}
	})

	t.Run("matches hash/fnv and covers every lane", func(t *testing.T) {
		t.Parallel()
		seen := make(map[int16]int)
		for range 10_000 {
			id := uuid.NewString()
			h := fnv.New32a()
			_, _ = h.Write([]byte(id))
			lane := outbox.Lane(id)
			require.Equal(t, int16(h.Sum32()%outbox.Lanes), lane)
			require.Equal(t, lane, outbox.Lane(id), "lane is a function of the id")
			seen[lane]++
		}
		require.Len(t, seen, outbox.Lanes)
		for lane, n := range seen {
			// 10 000 / 32 ≈ 312 per lane; a gross skew means a broken hash.
			require.Greater(t, n, 200, "lane %d", lane)
		}
	})
}

func TestAppend(t *testing.T) {
	t.Parallel()
	t.Run("business row and events are visible together after commit", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		w := newWriter(t, nil)
		conn := connect(t)
		agg := newAggregateID()

		before := time.Now().UTC().Truncate(time.Microsecond)
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		writeOrder(t, tx, agg, 1)
		events := []outbox.Event{
			orderEvent(agg, 1, event.OrderCreated, "created"),
			orderEvent(agg, 2, event.OrderConfirmed, "confirmed"),
			orderEvent(agg, 3, event.OrderCancelled, "cancelled"),
		}
		require.NoError(t, w.Append(ctx, tx, events...))

		// Another connection sees nothing before the commit.
		other := connect(t)
		require.Empty(t, records(t, other, agg))
		require.False(t, orderExists(t, other, agg))

		require.NoError(t, tx.Commit(ctx))
		after := time.Now().UTC()

		require.True(t, orderExists(t, other, agg))
		got := records(t, other, agg)
		require.Len(t, got, len(events))
		for i, r := range got {
			e := events[i]
			if i > 0 {
				require.Greater(t, r.ID, got[i-1].ID, "ids follow append order")
			}
			require.Equal(t, uuid.Version(7), r.EventID.Version())
			require.Equal(t, outbox.Lane(agg), r.Lane)
			require.Equal(t, e.Topic, r.Topic)
			require.Equal(t, e.AggregateType, r.AggregateType)
			require.Equal(t, agg, r.AggregateID)
			require.Equal(t, e.AggregateVersion, r.AggregateVersion)
			require.Equal(t, e.Type, r.EventType)
			require.Equal(t, event.ContentTypeProtobuf, r.ContentType)
			require.Empty(t, r.KeyID)
			require.Empty(t, r.Traceparent, "no span in ctx")
			require.Empty(t, r.Tracestate)
			require.Zero(t, r.Attempts)
			require.Equal(t, time.UTC, r.OccurredAt.Location())
			require.False(t, r.OccurredAt.Before(before), "occurred_at %s before %s", r.OccurredAt, before)
			require.False(t, r.OccurredAt.After(after), "occurred_at %s after %s", r.OccurredAt, after)
			require.Equal(t, got[0].OccurredAt, r.OccurredAt, "one Append, one instant")
			requirePayload(t, e.Payload, r.Payload)
		}
	})

	t.Run("a transaction that fails after the writes leaves neither row", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		conn := connect(t)
		tx, agg := createOrder(t, conn)
		// A later statement of the same transaction fails (a duplicate
		// business row), which aborts the transaction.
		_, err := tx.Exec(ctx, `INSERT INTO orders (id, version) VALUES ($1, 1)`, agg)
		require.Error(t, err)
		require.ErrorIs(t, tx.Commit(ctx), pgx.ErrTxCommitRollback)

		require.False(t, orderExists(t, conn, agg))
		require.Empty(t, records(t, conn, agg))
	})

	t.Run("a rolled-back transaction leaves neither row", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		conn := connect(t)
		tx, agg := createOrder(t, conn)
		require.NotEmpty(t, records(t, tx, agg), "visible inside the transaction")
		require.NoError(t, tx.Rollback(ctx))

		require.False(t, orderExists(t, conn, agg))
		require.Empty(t, records(t, conn, agg))
	})

	t.Run("event ids are unique across calls and transactions", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		w := newWriter(t, nil)
		conn := connect(t)
		agg := newAggregateID()

		const txs, perTx = 5, 200
		for v := range txs {
			tx, err := conn.Begin(ctx)
			require.NoError(t, err)
			events := make([]outbox.Event, perTx)
			for i := range events {
				events[i] = orderEvent(agg, int64(v*perTx+i), event.OrderCreated, "")
			}
			require.NoError(t, w.Append(ctx, tx, events...))
			require.NoError(t, tx.Commit(ctx))
		}
		got := records(t, conn, agg)
		require.Len(t, got, txs*perTx)
		ids := make(map[uuid.UUID]bool, len(got))
		for i, r := range got {
			require.False(t, ids[r.EventID], "duplicate event id %s", r.EventID)
			ids[r.EventID] = true
			require.Equal(t, int64(i), r.AggregateVersion, "rows in append order")
		}
	})

	t.Run("PII payloads are stored sealed and Decrypt restores them", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		old, next := servicetest.NewKey(t), servicetest.NewKey(t)
		keys, err := keyring.New("k1", map[string][]byte{"k1": old})
		require.NoError(t, err)
		w := newWriter(t, keys)
		conn := connect(t)
		agg := newAggregateID()

		secret := "alice@example.com, 1 Main Street, Springfield"
		pii := orderEvent(agg, 1, event.OrderCreated, secret)
		pii.PII = true
		plain := orderEvent(agg, 2, event.OrderConfirmed, "not personal")

		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		writeOrder(t, tx, agg, 1)
		require.NoError(t, w.Append(ctx, tx, pii, plain))
		require.NoError(t, tx.Commit(ctx))

		got := records(t, conn, agg)
		require.Len(t, got, 2)
		sealed, clear := got[0], got[1]
		require.Equal(t, "k1", sealed.KeyID)
		require.False(t, bytes.Contains(sealed.Payload, []byte(secret)), "plaintext stored")
		require.False(t, bytes.Contains(sealed.Payload, []byte("alice")), "plaintext stored")
		require.Empty(t, clear.KeyID)

		// After a rotation (new active key, old one still readable)
		// the relay still opens the row.
		rotated, err := keyring.New("k2", map[string][]byte{"k1": old, "k2": next})
		require.NoError(t, err)
		r := sealed
		require.NoError(t, outbox.Decrypt(rotated, &r))
		require.Empty(t, r.KeyID)
		requirePayload(t, pii.Payload, r.Payload)
		require.NoError(t, outbox.Decrypt(rotated, &r), "idempotent")
		requirePayload(t, pii.Payload, r.Payload)

		// A plaintext record is left alone, even without keys.
		c := clear
		require.NoError(t, outbox.Decrypt(nil, &c))
		require.Equal(t, clear, c)

		// The event id is the additional data: the ciphertext does not
		// open under another row's id.
		moved := sealed
		moved.EventID = clear.EventID
		require.ErrorIs(t, outbox.Decrypt(rotated, &moved), keyring.ErrDecrypt)
		require.Equal(t, sealed.Payload, moved.Payload, "unchanged on error")
		require.Equal(t, "k1", moved.KeyID)

		// The old key retired too early, or no keyring at all.
		retired, err := keyring.New("k2", map[string][]byte{"k2": next})
		require.NoError(t, err)
		r = sealed
		require.ErrorIs(t, outbox.Decrypt(retired, &r), keyring.ErrUnknownKey)
		require.ErrorIs(t, outbox.Decrypt(nil, &r), outbox.ErrNoKeyring)
	})

	t.Run("the trace context of the span in ctx is stored", func(t *testing.T) {
		t.Parallel()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
		t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

		// A caller whose trace arrived with vendor state; the writer's
		// span inherits it.
		state, err := trace.ParseTraceState("vendor=opaque,other=1")
		require.NoError(t, err)
		remote := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
			SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
			TraceFlags: trace.FlagsSampled,
			TraceState: state,
			Remote:     true,
		})
		ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
		ctx, span := tp.Tracer("outbox_test").Start(ctx, "PlaceOrder")
		defer span.End()
		sc := span.SpanContext()
		require.True(t, sc.IsValid())

		w := newWriter(t, nil)
		conn := connect(t)
		agg := newAggregateID()
		tx, err := conn.Begin(ctx)
		require.NoError(t, err)
		writeOrder(t, tx, agg, 1)
		require.NoError(t, w.Append(ctx, tx,
			orderEvent(agg, 1, event.OrderCreated, ""),
			orderEvent(agg, 2, event.OrderConfirmed, "")))
		require.NoError(t, tx.Commit(ctx))

		got := records(t, conn, agg)
		require.Len(t, got, 2)
		for _, r := range got {
			require.Equal(t, fmt.Sprintf("00-%s-%s-01", remote.TraceID(), sc.SpanID()), r.Traceparent)
			require.Equal(t, "vendor=opaque,other=1", r.Tracestate)

			// The relay's side: extracting the columns continues the trace.
			carrier := propagation.MapCarrier{event.HeaderTraceparent: r.Traceparent, event.HeaderTracestate: r.Tracestate}
			extracted := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
			require.Equal(t, sc.TraceID(), extracted.TraceID())
			require.Equal(t, sc.SpanID(), extracted.SpanID())
		}
	})

}

// The columns are W3C trace context by definition, so the writer fills them
// whatever the process-wide propagator is — here explicitly a no-op (an empty
// composite), as in a library test or a binary that never set one.
func TestAppendTraceContextIgnoresGlobalPropagator(t *testing.T) {
	prev := otel.GetTextMapPropagator()
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator())
	t.Cleanup(func() { otel.SetTextMapPropagator(prev) })

	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("outbox_test").Start(context.Background(), "PlaceOrder")
	defer span.End()

	w := newWriter(t, nil)
	conn := connect(t)
	agg := newAggregateID()
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, w.Append(ctx, tx, orderEvent(agg, 1, event.OrderCreated, "")))
	require.NoError(t, tx.Commit(ctx))

	got := records(t, conn, agg)
	require.Len(t, got, 1)
	require.Equal(t, fmt.Sprintf("00-%s-%s-01", span.SpanContext().TraceID(), span.SpanContext().SpanID()), got[0].Traceparent)
}

func TestAppendRejects(t *testing.T) {
	t.Parallel()
	valid := func() outbox.Event { return orderEvent("agg", 1, event.OrderCreated, "x") }
	cases := map[string]struct {
		edit func(*outbox.Event)
		want error
		msg  string
	}{
		"empty topic":          {func(e *outbox.Event) { e.Topic = "" }, nil, "empty topic"},
		"empty aggregate type": {func(e *outbox.Event) { e.AggregateType = "" }, nil, "empty aggregate type"},
		"empty aggregate id":   {func(e *outbox.Event) { e.AggregateID = "" }, nil, "empty aggregate id"},
		"empty event type":     {func(e *outbox.Event) { e.Type = "" }, nil, "empty event type"},
		"negative version":     {func(e *outbox.Event) { e.AggregateVersion = -1 }, nil, "negative aggregate version -1"},
		"nil payload":          {func(e *outbox.Event) { e.Payload = nil }, nil, "nil payload"},
		"typed nil payload":    {func(e *outbox.Event) { e.Payload = (*wrapperspb.StringValue)(nil) }, nil, "nil payload"},
		"PII without keyring":  {func(e *outbox.Event) { e.PII = true }, outbox.ErrNoKeyring, "event 1"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			w := newWriter(t, nil)
			conn := connect(t)
			agg := newAggregateID()

			tx, err := conn.Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(ctx) }()
			good, bad := valid(), valid()
			good.AggregateID, bad.AggregateID = agg, agg
			tc.edit(&bad)
			err = w.Append(ctx, tx, good, bad)
			require.ErrorContains(t, err, tc.msg)
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
			}
			// Validation precedes the insert: the valid event was not
			// written either, and the transaction is still usable.
			require.Empty(t, records(t, tx, agg))
		})
	}
}

func TestAppendNothingIsANoOp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	w, err := outbox.NewWriter(nil, reg)
	require.NoError(t, err)
	conn := connect(t)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	// An aborted transaction fails any statement: Append of nothing sends none.
	_, err = tx.Exec(ctx, "SELECT 1/0")
	require.Error(t, err)
	require.NoError(t, w.Append(ctx, tx))
	families, err := reg.Gather()
	require.NoError(t, err)
	require.Empty(t, families, "no series created")
}

func TestAppendCountsEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	w, err := outbox.NewWriter(nil, reg)
	require.NoError(t, err)
	// A second writer on the same registry shares the counter.
	w2, err := outbox.NewWriter(nil, reg)
	require.NoError(t, err)
	conn := connect(t)
	agg := newAggregateID()

	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, w.Append(ctx, tx,
		orderEvent(agg, 1, event.OrderCreated, ""),
		orderEvent(agg, 2, event.OrderConfirmed, ""),
		orderEvent(agg, 3, event.OrderConfirmed, "")))
	require.NoError(t, w2.Append(ctx, tx, orderEvent(agg, 4, event.OrderCreated, "")))
	require.NoError(t, tx.Commit(ctx))

	require.Equal(t, 2.0, counterValue(t, reg, event.TopicOrder, event.OrderCreated))
	require.Equal(t, 2.0, counterValue(t, reg, event.TopicOrder, event.OrderConfirmed))

	// A failed Append counts nothing.
	tx, err = conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	bad := orderEvent(agg, 5, event.OrderCreated, "")
	bad.PII = true
	require.ErrorIs(t, w.Append(ctx, tx, bad), outbox.ErrNoKeyring)
	require.Equal(t, 2.0, counterValue(t, reg, event.TopicOrder, event.OrderCreated))
}

// TestNotifyAtCommit is deliberately not parallel: LISTEN sees every
// transaction of the database, and Go runs a package's sequential tests
// before resuming any parallel one, so no other test commits meanwhile.
func TestNotifyAtCommit(t *testing.T) {
	ctx := context.Background()
	listener := connect(t)
	_, err := listener.Exec(ctx, "LISTEN outbox")
	require.NoError(t, err)

	// noNotification asserts that nothing arrives within a grace period: the
	// absence of an event can only be shown by waiting for it.
	noNotification := func(t *testing.T, why string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		n, err := listener.WaitForNotification(wctx)
		require.ErrorIs(t, err, context.DeadlineExceeded, "%s: got notification %+v", why, n)
	}

	w := newWriter(t, nil)
	conn := connect(t)
	agg := newAggregateID()
	other := newAggregateID()
	for outbox.Lane(other) == outbox.Lane(agg) {
		other = newAggregateID()
	}

	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	writeOrder(t, tx, agg, 1)
	writeOrder(t, tx, other, 1)
	require.NoError(t, w.Append(ctx, tx,
		orderEvent(agg, 1, event.OrderCreated, ""),
		orderEvent(agg, 2, event.OrderConfirmed, ""),
		orderEvent(other, 1, event.OrderCreated, ""),
		orderEvent(agg, 3, event.OrderCancelled, "")))
	noNotification(t, "before commit")

	require.NoError(t, tx.Commit(ctx))
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	require.NoError(t, err, "no notification after commit")
	require.Equal(t, "outbox", n.Channel)
	require.Equal(t, conn.PgConn().PID(), n.PID, "sent by the writer's backend")
	// The payload names each lane written once, so that the relay wakes
	// only the workers that own them.
	lanes := strings.Split(n.Payload, ",")
	slices.Sort(lanes)
	want := []string{strconv.Itoa(int(outbox.Lane(agg))), strconv.Itoa(int(outbox.Lane(other)))}
	slices.Sort(want)
	require.Equal(t, want, lanes, "payload %q", n.Payload)
	noNotification(t, "one notification per transaction, not per event")

	// A rolled-back transaction notifies nobody.
	tx, err = conn.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, w.Append(ctx, tx, orderEvent(agg, 4, event.OrderCreated, "")))
	require.NoError(t, tx.Rollback(ctx))
	noNotification(t, "after rollback")

}

// --- helpers ---

func newWriter(t *testing.T, keys *keyring.Keyring) *outbox.Writer {
	t.Helper()
	w, err := outbox.NewWriter(keys, prometheus.NewRegistry())
	require.NoError(t, err)
	return w
}

func newAggregateID() string { return "order-" + uuid.NewString() }

func orderEvent(agg string, version int64, typ, body string) outbox.Event {
	return outbox.Event{
		Topic:            event.TopicOrder,
		AggregateType:    event.AggregateOrder,
		AggregateID:      agg,
		AggregateVersion: version,
		Type:             typ,
		Payload:          wrapperspb.String(body + "#" + typ),
	}
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// createOrder begins a transaction on conn that writes a new order and
// appends its OrderCreated event, and returns it with the order's id.
func createOrder(t *testing.T, conn *pgx.Conn) (pgx.Tx, string) {
	t.Helper()
	ctx := context.Background()
	agg := newAggregateID()
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	writeOrder(t, tx, agg, 1)
	require.NoError(t, newWriter(t, nil).Append(ctx, tx, orderEvent(agg, 1, event.OrderCreated, "x")))
	return tx, agg
}

func writeOrder(t *testing.T, tx pgx.Tx, id string, version int64) {
	t.Helper()
	_, err := tx.Exec(context.Background(), `INSERT INTO orders (id, version) VALUES ($1, $2)`, id, version)
	require.NoError(t, err)
}

func orderExists(t *testing.T, q querier, id string) bool {
	t.Helper()
	var ok bool
	require.NoError(t, q.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1)`, id).Scan(&ok))
	return ok
}

// records reads an aggregate's outbox rows in id order, as the relay would.
func records(t *testing.T, q querier, aggregateID string) []outbox.Record {
	t.Helper()
	rows, err := q.Query(context.Background(), `
		SELECT id, event_id, lane, topic, aggregate_type, aggregate_id, aggregate_version,
		       event_type, content_type, payload, key_id, traceparent, tracestate,
		       occurred_at, attempts
		FROM outbox WHERE aggregate_id = $1 ORDER BY id`, aggregateID)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowToStructByName[outbox.Record])
	require.NoError(t, err)
	for i := range got {
		// pgx returns timestamptz in the local zone.
		got[i].OccurredAt = got[i].OccurredAt.UTC()
	}
	return got
}

func requirePayload(t *testing.T, want proto.Message, payload []byte) {
	t.Helper()
	got := want.ProtoReflect().New().Interface()
	require.NoError(t, proto.Unmarshal(payload, got))
	require.True(t, proto.Equal(want, got), "payload %v, want %v", got, want)
}

func counterValue(t *testing.T, reg *prometheus.Registry, topic, eventType string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "outbox_events_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["topic"] == topic && labels["event_type"] == eventType {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}
