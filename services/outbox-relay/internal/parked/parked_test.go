package parked_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
	opsv1 "github.com/goodgo/goodgo/proto/goodgo/ops/v1"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/parked"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/relay"
)

// outboxDB is a service database as the relay sees it, connected to as a
// role with exactly the relay's grants on the outbox (pgtest.Owner standing
// in for goodgo_relay, whose grants db/roles_test.go proves). It returns
// the relay's URL, the database's name and a superuser pool for the
// writers and checks.
func outboxDB(t *testing.T) (string, string, *pgxpool.Pool) {
	t.Helper()
	pgtest.EnsureOwner(t)
	ddl, err := os.ReadFile("../../../../db/outbox/schema/outbox.sql")
	require.NoError(t, err)
	u, pool := pgtest.NewDatabase(t, fstest.MapFS{
		"000001_outbox.up.sql":   {Data: ddl},
		"000001_outbox.down.sql": {Data: []byte("DROP TABLE outbox, outbox_lanes;")},
		"000002_relay.up.sql": {Data: []byte("GRANT SELECT, UPDATE, DELETE ON outbox TO " + pgtest.Owner + ";\n" +
			"GRANT SELECT, INSERT, UPDATE ON outbox_lanes TO " + pgtest.Owner + ";")},
		"000002_relay.down.sql": {Data: []byte("SELECT 1;")},
	})
	parsed, err := url.Parse(u)
	require.NoError(t, err)
	return pgtest.AsRole(u, pgtest.Owner), strings.TrimPrefix(parsed.Path, "/"), pool
}

// write appends events of aggregate agg, versions 1..n, in one
// transaction, parking those whose version is in park (as the relay does
// when the broker refuses them). It returns their event ids by version.
func write(t *testing.T, pool *pgxpool.Pool, agg string, n int, park ...int) map[int]uuid.UUID {
	t.Helper()
	w, err := outbox.NewWriter(nil, nil)
	require.NoError(t, err)
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	ids := map[int]uuid.UUID{}
	for v := 1; v <= n; v++ {
		require.NoError(t, w.Append(ctx, tx, outbox.Event{Topic: event.TopicOrder, AggregateType: event.AggregateOrder,
			AggregateID: agg, AggregateVersion: int64(v), Type: event.OrderConfirmed, Payload: wrapperspb.String(agg)}))
		var id uuid.UUID
		require.NoError(t, tx.QueryRow(ctx, "SELECT event_id FROM outbox WHERE aggregate_id = $1 AND aggregate_version = $2", agg, v).Scan(&id))
		ids[v] = id
	}
	for _, v := range park {
		_, err := tx.Exec(ctx, "UPDATE outbox SET parked_at = now(), attempts = 3, last_error = 'MESSAGE_TOO_LARGE' WHERE event_id = $1", ids[v])
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit(ctx))
	return ids
}

type bundle struct {
	pki  *authtest.PKI
	addr string
	reg  *prometheus.Registry
	log  *servicetest.Logs
}

// serve runs ParkedEventService over urls behind the relay's policies, on
// a TLS gRPC server like the binary's.
func serve(t *testing.T, urls ...string) *bundle {
	t.Helper()
	b := &bundle{pki: authtest.New(t), reg: prometheus.NewRegistry(), log: &servicetest.Logs{}}
	logger := slog.New(slog.NewJSONHandler(io.MultiWriter(b.log, testLog{t}), nil))
	srv, err := parked.Open(urls, b.reg, logger)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	az, creds := b.pki.Authorizer("outbox-relay", parked.Policies())
	gs, err := grpcserver.New(grpcserver.Config{Addr: "127.0.0.1:0", Credentials: creds, Authorizer: az}, logger, b.reg,
		func(s grpc.ServiceRegistrar) { opsv1.RegisterParkedEventServiceServer(s, srv) })
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gs.Serve(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	b.addr = gs.Addr().String()
	return b
}

func (b *bundle) as(user string, roles ...string) opsv1.ParkedEventServiceClient {
	return opsv1.NewParkedEventServiceClient(b.pki.Dial(b.addr, grpc.WithPerRPCCredentials(grpcclient.Bearer(b.pki.Token(user, roles...)))))
}

func keyed() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), idempotency.MetadataKey, uuid.NewString())
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(p)))
	return len(p), nil
}

// A parked row replayed is published once, after the aggregate's later
// event that went on without it; the replay is audited.
func TestReplayedRowIsPublishedOnce(t *testing.T) {
	t.Parallel()
	relayURL, dbName, pool := outboxDB(t)
	br, err := broker.Start(context.Background(), broker.Config{Addr: "127.0.0.1:0", Topics: []string{event.TopicOrder}, Partitions: 1})
	require.NoError(t, err)
	t.Cleanup(br.Close)
	ids := write(t, pool, "order-r", 2, 1) // v1 parked, v2 pending

	k, err := relay.NewKafka(relay.KafkaConfig{Brokers: []string{br.Addr()}, ClientID: "parked-test"})
	require.NoError(t, err)
	keys, err := keyring.New("k1", map[string][]byte{"k1": []byte("0123456789abcdef0123456789abcdef")})
	require.NoError(t, err)
	r, err := relay.New(relay.Config{ID: "parked-test", DatabaseURLs: []string{relayURL}, LeaseTTL: 3 * time.Second,
		PollInterval:  time.Minute, // the replay's notification must wake it, not the poll
		StatsInterval: 200 * time.Millisecond,
	}, relay.Options{NewPublisher: k.NewPublisher, Keys: keys, Registerer: prometheus.NewRegistry(),
		Logger: slog.New(slog.NewJSONHandler(testLog{t}, nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	relayDone := make(chan struct{})
	go func() { defer close(relayDone); _ = r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-relayDone; k.Close() })

	rd := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{br.Addr()}, Topic: event.TopicOrder, Partition: 0, MaxWait: 50 * time.Millisecond})
	t.Cleanup(func() { _ = rd.Close() })
	var mu sync.Mutex
	var got []string
	go func() {
		for {
			m, err := rd.ReadMessage(ctx)
			if err != nil {
				return
			}
			for _, h := range m.Headers {
				if h.Key == event.HeaderEventID {
					mu.Lock()
					got = append(got, string(h.Value))
					mu.Unlock()
				}
			}
		}
	}()
	received := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
	require.Eventually(t, func() bool { return len(received()) == 1 }, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{ids[2].String()}, received(), "the later event went on without the parked one")

	b := serve(t, relayURL)
	ops := b.as("ops-1", caller.RoleOperator)
	listed, err := ops.ListParkedEvents(context.Background(), &opsv1.ListParkedEventsRequest{})
	require.NoError(t, err)
	require.Len(t, listed.GetEvents(), 1)
	ev := listed.GetEvents()[0]
	require.Equal(t, ids[1].String(), ev.GetEventId())
	require.Equal(t, dbName, ev.GetSource())
	require.Equal(t, int32(3), ev.GetAttempts())
	require.Equal(t, "MESSAGE_TOO_LARGE", ev.GetError())
	require.Equal(t, int64(1), ev.GetAggregateVersion())
	require.Equal(t, opsv1.ParkedEventState_PARKED_EVENT_STATE_PARKED, ev.GetState())

	res, err := ops.ReplayParkedEvent(keyed(), &opsv1.ReplayParkedEventRequest{EventId: ids[1].String(), Reason: "topic limit raised"})
	require.NoError(t, err)
	require.Equal(t, "requeued", res.GetResults()[0].GetResult())
	require.Eventually(t, func() bool {
		var published bool
		require.NoError(t, pool.QueryRow(context.Background(), "SELECT published_at IS NOT NULL FROM outbox WHERE event_id = $1", ids[1]).Scan(&published))
		return published && len(received()) == 2
	}, 20*time.Second, 20*time.Millisecond, "the replayed row is published and marked")
	require.Equal(t, []string{ids[2].String(), ids[1].String()}, received(), "published once, after the aggregate's later event")

	_, err = ops.ReplayParkedEvent(keyed(), &opsv1.ReplayParkedEventRequest{EventId: ids[1].String()})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "a repeat finds it no longer parked")
	listed, err = ops.ListParkedEvents(context.Background(), &opsv1.ListParkedEventsRequest{})
	require.NoError(t, err)
	require.Empty(t, listed.GetEvents())

	audits := b.log.All("audit")
	require.Len(t, audits, 2)
	require.Equal(t, "ops-1", audits[0]["actor"])
	require.Equal(t, "outbox.replay", audits[0]["action"])
	require.Equal(t, ids[1].String(), audits[0]["event_id"])
	require.Equal(t, dbName, audits[0]["database"])
	require.Equal(t, "topic limit raised", audits[0]["reason"])
	require.Equal(t, "ok", audits[0]["outcome"])
	require.Equal(t, "refused", audits[1]["outcome"])
	require.Equal(t, 1.0, metric(t, b.reg, dbName, "replay", "ok"))
}

// metric is the value of outbox_parked_actions_total of one series (0
// when it has none).
func metric(t *testing.T, reg *prometheus.Registry, database, action, outcome string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "outbox_parked_actions_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["database"] == database && l["action"] == action && l["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// Operators list parked rows of every database in pages, and discard them
// with a reason; customers are refused everything.
func TestListPaginatesAndDiscardDeletes(t *testing.T) {
	t.Parallel()
	url1, db1, pool1 := outboxDB(t)
	url2, db2, pool2 := outboxDB(t)
	a := write(t, pool1, "order-a", 3, 1, 2, 3)
	bIDs := write(t, pool2, "order-b", 3, 1, 3)
	b := serve(t, url1, url2)
	ops := b.as("ops-1", caller.RoleOperator)
	ctx := context.Background()

	var seen []string
	var sources []string
	tok := ""
	pages := 0
	for {
		page, err := ops.ListParkedEvents(ctx, &opsv1.ListParkedEventsRequest{PageSize: 2, PageToken: tok})
		require.NoError(t, err)
		require.LessOrEqual(t, len(page.GetEvents()), 2)
		for _, e := range page.GetEvents() {
			seen = append(seen, e.GetEventId())
			sources = append(sources, e.GetSource())
		}
		pages++
		if tok = page.GetNextPageToken(); tok == "" {
			break
		}
	}
	require.Equal(t, []string{a[1].String(), a[2].String(), a[3].String(), bIDs[1].String(), bIDs[3].String()}, seen)
	require.Equal(t, []string{db1, db1, db1, db2, db2}, sources)
	require.Equal(t, 3, pages)
	only, err := ops.ListParkedEvents(ctx, &opsv1.ListParkedEventsRequest{Source: db2})
	require.NoError(t, err)
	require.Len(t, only.GetEvents(), 2)
	one, err := ops.ListParkedEvents(ctx, &opsv1.ListParkedEventsRequest{AggregateType: event.AggregateOrder, AggregateId: "order-b"})
	require.NoError(t, err)
	require.Len(t, one.GetEvents(), 2)
	_, err = ops.ListParkedEvents(ctx, &opsv1.ListParkedEventsRequest{PageToken: "garbage"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))

	customer := b.as("alice")
	_, err = customer.ListParkedEvents(ctx, &opsv1.ListParkedEventsRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = customer.DiscardParkedEvent(keyed(), &opsv1.DiscardParkedEventRequest{EventId: a[1].String(), Reason: "mine"})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = customer.ReplayParkedEvent(keyed(), &opsv1.ReplayParkedEventRequest{EventId: a[1].String()})
	require.Equal(t, codes.PermissionDenied, status.Code(err))

	_, err = ops.DiscardParkedEvent(keyed(), &opsv1.DiscardParkedEventRequest{EventId: a[1].String()})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "a reason is required")
	_, err = ops.DiscardParkedEvent(ctx, &opsv1.DiscardParkedEventRequest{EventId: a[1].String(), Reason: "r"})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "an idempotency key is required")
	_, err = ops.DiscardParkedEvent(keyed(), &opsv1.DiscardParkedEventRequest{EventId: uuid.NewString(), Reason: "r"})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = ops.DiscardParkedEvent(keyed(), &opsv1.DiscardParkedEventRequest{EventId: bIDs[2].String(), Reason: "r"})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "a pending row is not parked")

	d, err := ops.DiscardParkedEvent(keyed(), &opsv1.DiscardParkedEventRequest{EventId: bIDs[1].String(), Source: db2, Reason: "payload of a test order"})
	require.NoError(t, err)
	require.Equal(t, opsv1.ParkedEventState_PARKED_EVENT_STATE_DISCARDED, d.GetEvent().GetState())
	require.Equal(t, "ops-1", d.GetEvent().GetResolvedBy())
	require.Equal(t, db2, d.GetEvent().GetSource())
	var n int
	require.NoError(t, pool2.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE event_id = $1", bIDs[1]).Scan(&n))
	require.Zero(t, n, "the row is deleted")
	_, err = ops.DiscardParkedEvent(keyed(), &opsv1.DiscardParkedEventRequest{EventId: bIDs[1].String(), Reason: "again"})
	require.Equal(t, codes.NotFound, status.Code(err))

	audits := b.log.All("audit")
	var ok []map[string]any
	for _, line := range audits {
		if line["outcome"] == "ok" {
			ok = append(ok, line)
		}
	}
	require.Len(t, ok, 1)
	require.Equal(t, "outbox.discard", ok[0]["action"])
	require.Equal(t, "payload of a test order", ok[0]["reason"])
	require.Equal(t, "ops-1", ok[0]["actor"])
	require.Equal(t, db2, ok[0]["database"])
	require.Equal(t, "order-b", ok[0]["aggregate_id"])
	require.Equal(t, 1.0, metric(t, b.reg, db2, "discard", "ok"))
}
