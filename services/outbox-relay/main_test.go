package main

import (
	"context"
	"io"
	"maps"
	"net/http"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
)

// The binary's composition root: ready once a database and the broker
// answer, relays an event, exposes the relay metrics, stops on cancel.
func TestRunRelaysAndReportsReady(t *testing.T) {
	url, pool, b := startDependencies(t)

	env := authtest.New(t).Env("outbox-relay")
	maps.Copy(env, map[string]string{
		"OUTBOX_DATABASE_URLS": url,
		"KAFKA_BROKERS":        b.Addr(),
		"GRPC_ADDR":            "127.0.0.1:0",
		"HTTP_ADDR":            "127.0.0.1:0",
	})
	relay := startRun(t, env)
	get := func(path string) (int, string) { return relay.get(t, path) }
	ctx := context.Background()
	require.Eventually(t, func() bool { code, _ := get("/readyz"); return code == http.StatusOK }, 10*time.Second, 20*time.Millisecond)

	w, err := outbox.NewWriter(nil, nil)
	require.NoError(t, err)
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, w.Append(ctx, tx, outbox.Event{Topic: event.TopicPayment, AggregateType: event.AggregatePayment,
		AggregateID: "payment-1", AggregateVersion: 1, Type: event.PaymentProcessed, Payload: wrapperspb.String("paid")}))
	require.NoError(t, tx.Commit(ctx))

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr()}, Topic: event.TopicPayment, Partition: 0, MaxWait: 50 * time.Millisecond})
	t.Cleanup(func() { _ = r.Close() })
	require.Eventually(t, func() bool {
		_, body := get("/metrics")
		return strings.Contains(body, `outbox_published_total{topic="goodgo.payment.events"} 1`)
	}, 10*time.Second, 20*time.Millisecond)
	_, body := get("/metrics")
	for _, name := range []string{"outbox_publish_lag_seconds_bucket", "outbox_lanes_owned", "outbox_processing_lag_seconds", "outbox_table_size"} {
		require.True(t, strings.Contains(body, name), "/metrics lacks %s", name)
	}

	// The broker goes away with an event pending: /readyz says that
	// publishing fails, not only that a bootstrap broker is down.
	b.Close()
	tx, err = pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, w.Append(ctx, tx, outbox.Event{Topic: event.TopicPayment, AggregateType: event.AggregatePayment,
		AggregateID: "payment-1", AggregateVersion: 2, Type: event.PaymentProcessed, Payload: wrapperspb.String("refunded")}))
	require.NoError(t, tx.Commit(ctx))
	require.Eventually(t, func() bool {
		code, body := get("/readyz")
		return code == http.StatusServiceUnavailable && strings.Contains(body, "kafka (publishing failing)")
	}, 15*time.Second, 50*time.Millisecond, "not ready: publishing failing")

	relay.stop(t)
	var owned int
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM outbox_lanes WHERE owner <> ''").Scan(&owned))
	require.Zero(t, owned, "lanes released at shutdown")
}

// Issue 12: with a real Kafka nothing created the payment and inventory
// topics and the relay retried "unknown topic" for ever, ready all along.
// Now it names the missing topics at start and on /readyz, stays up, and
// is ready once an init step creates them.
func TestMissingTopicsAreNamedUntilCreated(t *testing.T) {
	url, _, b := startDependencies(t, event.TopicOrder)

	env := authtest.New(t).Env("outbox-relay")
	maps.Copy(env, map[string]string{
		"OUTBOX_DATABASE_URLS": url, "KAFKA_BROKERS": b.Addr(), "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
	})
	r := startRun(t, env)
	require.NotEmpty(t, r.Logs.Find("kafka topics missing: not ready until they are created")["level"], "named at start")
	readyz := func() (int, string) { return r.get(t, "/readyz") }
	const notReady = "not ready: kafka (missing topics " + event.TopicPayment + ", " + event.TopicInventory + ")\n"
	require.Eventually(t, func() bool { code, body := readyz(); return code == http.StatusServiceUnavailable && body == notReady },
		10*time.Second, 20*time.Millisecond, "readyz names the missing topics")

	client := &kafka.Client{Addr: kafka.TCP(b.Addr())}
	resp, err := client.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: event.TopicPayment, NumPartitions: 6, ReplicationFactor: 1},
		{Topic: event.TopicInventory, NumPartitions: 6, ReplicationFactor: 1},
	}})
	require.NoError(t, err)
	for _, err := range resp.Errors {
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { code, _ := readyz(); return code == http.StatusOK }, 10*time.Second, 20*time.Millisecond)
	r.stop(t)
}

// startDependencies creates an outbox database and starts a development
// broker; with topics, the broker holds only those topics.
func startDependencies(t *testing.T, topics ...string) (string, *pgxpool.Pool, *broker.Broker) {
	t.Helper()
	ddl, err := os.ReadFile("../../db/outbox/schema/outbox.sql")
	require.NoError(t, err)
	url, pool := pgtest.NewDatabase(t, fstest.MapFS{"000001_outbox.up.sql": {Data: ddl}, "000001_outbox.down.sql": {Data: []byte("SELECT 1;")}})
	b, err := broker.Start(context.Background(), broker.Config{Addr: "127.0.0.1:0", Topics: topics})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return url, pool, b
}

// relayRun is run() serving on free ports.
type relayRun struct{ *servicetest.Process }

// startRun runs the relay as main does with env and waits until it serves.
func startRun(t *testing.T, env map[string]string) *relayRun {
	t.Helper()
	cfg, err := loadConfig(lookup(env))
	require.NoError(t, err)
	return &relayRun{servicetest.Start(t, "outbox-relay", func(ctx context.Context, stdout io.Writer) error {
		return run(ctx, cfg, stdout, lookup(map[string]string{"OTEL_SDK_DISABLED": "true"}))
	})}
}

// get returns the status and body of an ops HTTP path (0 and the error
// when it does not answer).
func (r *relayRun) get(t *testing.T, path string) (int, string) {
	return servicetest.HTTPGet(t, "http://"+r.HTTPAddr+path)
}

// stop cancels run and requires it to return nil.
func (r *relayRun) stop(t *testing.T) { r.Stop(t) }
