package relay_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/kafkaconn"
	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/relay"
)

// secureKafka is a development broker that serves TLS only, with a
// certificate for 127.0.0.1 from a test CA, and requires a SCRAM-SHA-512
// login; cfg is how a service would be configured to reach it.
type secureKafka struct {
	b   *broker.Broker
	cfg config.Kafka
}

const (
	kafkaUser     = "goodgo"
	kafkaPassword = "scram-512-password"
)

func startSecureKafka(t *testing.T) secureKafka {
	t.Helper()
	ca, err := mtls.NewCA("kafka test CA", time.Hour)
	require.NoError(t, err)
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	require.NoError(t, os.WriteFile(caFile, ca.PEM, 0o600))
	srv, err := ca.Issue("kafka", []string{"127.0.0.1"}, time.Hour)
	require.NoError(t, err)
	cert, err := tls.X509KeyPair(srv.CertPEM, srv.KeyPEM)
	require.NoError(t, err)
	b := startBroker(t, broker.Config{
		TLS:   &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Users: []broker.User{{Mechanism: broker.SASLScramSHA512, Name: kafkaUser, Password: kafkaPassword}},
	})
	return secureKafka{b: b, cfg: config.Kafka{
		Brokers: []string{b.Addr()}, TLS: true, CAFile: caFile,
		SASL: config.KafkaSASL{Mechanism: config.SASLScramSHA512, Username: kafkaUser, Password: kafkaPassword},
	}}
}

// relayKafka is the relay's Kafka client as run builds it from cfg.
func relayKafka(t *testing.T, cfg config.Kafka) *relay.Kafka {
	t.Helper()
	conn, err := kafkaconn.New(cfg)
	require.NoError(t, err)
	k, err := relay.NewKafka(relay.KafkaConfig{Brokers: cfg.Brokers, Conn: conn, ClientID: "relay-test"})
	require.NoError(t, err)
	t.Cleanup(k.Close)
	return k
}

// envelope is an order event with the headers the relay writes.
func envelope(id uuid.UUID, agg string, version int64) kafka.Message {
	return kafka.Message{
		Topic: event.TopicOrder,
		Key:   []byte(agg),
		Value: []byte("payload of " + agg),
		Headers: []kafka.Header{
			{Key: event.HeaderEventID, Value: []byte(id.String())},
			{Key: event.HeaderEventType, Value: []byte(event.OrderConfirmed)},
			{Key: event.HeaderAggregateType, Value: []byte(event.AggregateOrder)},
			{Key: event.HeaderAggregateID, Value: []byte(agg)},
			{Key: event.HeaderAggregateVersion, Value: []byte(strconv.FormatInt(version, 10))},
			{Key: event.HeaderOccurredAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
			{Key: event.HeaderContentType, Value: []byte(event.ContentTypeProtobuf)},
		},
	}
}

// TestKafkaOverTLSAndSCRAM publishes through the relay's publisher and
// applies through an inbox consumer, both over TLS with SCRAM-SHA-512
// against the development broker.
func TestKafkaOverTLSAndSCRAM(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	sk := startSecureKafka(t)

	k := relayKafka(t, sk.cfg)
	require.NoError(t, k.Ping(ctx), "readiness logs in too")
	pub := k.NewPublisher()
	defer func() { require.NoError(t, pub.Close()) }()
	sent := map[uuid.UUID]string{}
	var msgs []kafka.Message
	for i := range 5 {
		id, agg := uuid.New(), fmt.Sprintf("order-%d", i)
		sent[id] = agg
		msgs = append(msgs, envelope(id, agg, 1))
	}
	require.NoError(t, pub.Publish(ctx, msgs))

	ddl, err := os.ReadFile("../../../../db/inbox/schema/inbox.sql")
	require.NoError(t, err)
	_, pool := pgtest.NewDatabase(t, fstest.MapFS{
		"000001_inbox.up.sql":     {Data: ddl},
		"000001_inbox.down.sql":   {Data: []byte("DROP TABLE inbox, inbox_versions, inbox_parked;")},
		"000002_effects.up.sql":   {Data: []byte("CREATE TABLE effects (event_id UUID PRIMARY KEY, aggregate_id TEXT NOT NULL);")},
		"000002_effects.down.sql": {Data: []byte("DROP TABLE effects;")},
	})
	conn, err := kafkaconn.New(sk.cfg)
	require.NoError(t, err)
	consumer, err := inbox.New(inbox.Config{Brokers: sk.cfg.Brokers, GroupID: "secure-" + uuid.NewString()[:8], Topics: []string{event.TopicOrder}},
		pool, func(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
			_, err := tx.Exec(ctx, "INSERT INTO effects (event_id, aggregate_id) VALUES ($1, $2)", ev.ID, ev.AggregateID)
			return err
		}, inbox.Options{Dialer: conn.Dialer("inbox-test"), Keys: testKeys(t)})
	require.NoError(t, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- consumer.Run(runCtx) }()
	defer func() {
		stop()
		require.NoError(t, <-done)
	}()

	applied := func() map[uuid.UUID]string {
		rows, err := pool.Query(ctx, "SELECT event_id, aggregate_id FROM effects")
		require.NoError(t, err)
		got := map[uuid.UUID]string{}
		for rows.Next() {
			var id uuid.UUID
			var agg string
			require.NoError(t, rows.Scan(&id, &agg))
			got[id] = agg
		}
		require.NoError(t, rows.Err())
		return got
	}
	require.Eventually(t, func() bool { return len(applied()) == len(sent) }, 30*time.Second, 20*time.Millisecond,
		"every published event applied through the secured inbox")
	require.Equal(t, sent, applied())
}

// TestKafkaRefusesInsecureClients: against the same broker, a relay without
// TLS, with a wrong password, or not trusting the broker's CA can neither
// publish nor pass readiness.
func TestKafkaRefusesInsecureClients(t *testing.T) {
	t.Parallel()
	sk := startSecureKafka(t)
	for _, tc := range []struct {
		name  string
		edit  func(*config.Kafka)
		check func(*testing.T, error)
	}{
		{"a relay without TLS", func(c *config.Kafka) { c.TLS, c.CAFile = false, "" },
			func(t *testing.T, err error) { require.Error(t, err) }},
		{"a relay with a wrong password", func(c *config.Kafka) { c.SASL.Password = "not-" + kafkaPassword },
			func(t *testing.T, err error) { require.ErrorIs(t, err, kafka.SASLAuthenticationFailed) }},
		{"a relay that does not trust the broker's CA", func(c *config.Kafka) { c.CAFile = "" }, // system roots
			func(t *testing.T, err error) {
				var unknown x509.UnknownAuthorityError
				require.ErrorAs(t, err, &unknown)
			}},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			cfg := sk.cfg
			tc.edit(&cfg)
			k := relayKafka(t, cfg)
			pub := k.NewPublisher()
			defer func() { _ = pub.Close() }()
			err := pub.Publish(ctx, []kafka.Message{envelope(uuid.New(), "order-x", 1)})
			t.Logf("publish: %v", err)
			tc.check(t, err)
			tc.check(t, k.Ping(ctx))
		})
	}
}
