package relay

import (
	"context"
	"errors"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/goodgo/goodgo/platform/kafkaconn"
)

// KafkaConfig configures the Kafka publishers.
type KafkaConfig struct {
	// Brokers are the bootstrap brokers.
	Brokers []string
	// Conn secures every connection, the publishers' and Ping's: TLS and
	// SASL (kafkaconn.New). The zero value is plaintext without SASL.
	Conn kafkaconn.Settings
	// ClientID names the relay to the brokers.
	ClientID string
	// BatchBytes is the relay's MaxBatchBytes.
	BatchBytes int
	// BatchTimeout is how long kafka-go waits for more messages before
	// sending a partition's batch; every Publish waits it once, since a
	// relay batch is handed over whole. Default 1ms.
	BatchTimeout time.Duration
}

// Kafka publishes to a Kafka cluster with kafka-go. It hands out one
// kafka.Writer per relay worker (kafka-go batches messages of concurrent
// callers together, and a batch shared by two workers could split one
// worker's partition share across two produce requests), all sharing one
// connection pool (kafka.Transport).
type Kafka struct {
	cfg       KafkaConfig
	transport *kafka.Transport
}

// NewKafka returns a Kafka publisher factory; it connects lazily.
func NewKafka(cfg KafkaConfig) (*Kafka, error) {
	if len(cfg.Brokers) == 0 {
		return nil, errors.New("relay: no Kafka broker")
	}
	if cfg.BatchBytes <= 0 {
		cfg.BatchBytes = DefaultMaxBatchBytes
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = time.Millisecond
	}
	return &Kafka{
		cfg:       cfg,
		transport: transport(cfg),
	}, nil
}

func transport(cfg KafkaConfig) *kafka.Transport {
	t := cfg.Conn.Transport(cfg.ClientID)
	t.DialTimeout = 5 * time.Second
	// Short, so that metadata (partition leaders) is refreshed soon after a
	// broker comes back at another address.
	t.MetadataTTL = 5 * time.Second
	return t
}

// NewPublisher returns a Publisher for one worker.
func (k *Kafka) NewPublisher() Publisher {
	return &kafkaPublisher{w: &kafka.Writer{
		Addr:      kafka.TCP(k.cfg.Brokers...),
		Transport: k.transport,
		// Murmur2 of the key, as Kafka's Java client partitions: other
		// producers of these topics (Kafka Connect, tools) agree on an
		// aggregate's partition.
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		BatchBytes:   int64(k.cfg.BatchBytes),
		BatchTimeout: k.cfg.BatchTimeout,
		// kafka-go's own retries are few and short: the relay retries the
		// batch itself with backoff and records each failure.
		MaxAttempts:     2,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: 250 * time.Millisecond,
		ReadTimeout:     10 * time.Second,
		WriteTimeout:    10 * time.Second,
	}}
}

// Ping reports whether a bootstrap broker answers, for readiness: it
// connects as the publishers do, TLS handshake and SASL login included, so a
// broker that refuses the relay's credentials is not ready.
func (k *Kafka) Ping(ctx context.Context) error {
	return k.cfg.Conn.Ping(ctx, k.cfg.ClientID, k.cfg.Brokers)
}

// Close closes the shared idle connections.
func (k *Kafka) Close() { k.transport.CloseIdleConnections() }

type kafkaPublisher struct{ w *kafka.Writer }

// Publish sets the writer's BatchSize to len(msgs) first: kafka-go
// allocates each partition batch's message slice at BatchSize up front
// (76 KB at the default 500), and at a few events per relay batch that
// slice was 77 % of the relay's allocated bytes and its GC a fifth of its
// CPU during BenchmarkOrderSaga (TestPublishAllocatesByTheBatch). A relay
// batch is handed over whole, so no partition's share exceeds len(msgs):
// still one produce request per partition, and a batch whose messages all
// go to one partition is now full, sent without waiting BatchTimeout. The
// worker that owns the writer is its only caller, one Publish at a time,
// and kafka-go reads BatchSize only within WriteMessages (and Stats, which
// the relay does not call), so the write does not race.
func (p *kafkaPublisher) Publish(ctx context.Context, msgs []kafka.Message) error {
	p.w.BatchSize = max(len(msgs), 1)
	return p.w.WriteMessages(ctx, msgs...)
}

func (p *kafkaPublisher) Close() error { return p.w.Close() }
