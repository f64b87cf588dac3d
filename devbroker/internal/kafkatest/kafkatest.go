// Package kafkatest drives a Kafka broker through the project's client,
// segmentio/kafka-go, configured as the services configure it, so that the
// dev broker's tests check what the services rely on: keyed writes with
// headers, consumer groups that commit and resume, per-key order. It works
// against any broker address, the dev broker or a real cluster.
package kafkatest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

// BatchTimeout is the Writer's batch timeout. kafka-go's default of 1 s
// makes every synchronous single-message write take a second; services set
// a few milliseconds, so the tests do too.
const BatchTimeout = 5 * time.Millisecond

// NewWriter returns a Writer as the outbox relay uses one: acks from all
// in-sync replicas, key-hash partitioning (so one aggregate's events share
// a partition and stay in order) and a short batch timeout.
func NewWriter(addr, topic string) *kafka.Writer {
	return &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: BatchTimeout,
	}
}

// NewGroupReader returns a consumer-group Reader that starts a new group at
// the earliest offset and commits only when asked (CommitMessages), so a
// test decides exactly what is committed.
func NewGroupReader(addr, topic, group string) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:        []string{addr},
		Topic:          topic,
		GroupID:        group,
		StartOffset:    kafka.FirstOffset,
		CommitInterval: 0, // synchronous commits in CommitMessages
		MinBytes:       1,
		MaxBytes:       10 << 20,
		MaxWait:        100 * time.Millisecond,
	})
}

// Message is one event the test wrote: its key, its position in the key's
// sequence and the headers it carried.
type Message struct {
	Key     string
	Seq     int
	Headers []kafka.Header
}

// ID identifies a message by key and sequence number; it is also the
// message value and its event-id header.
func (m Message) ID() string { return fmt.Sprintf("%s/%03d", m.Key, m.Seq) }

// Messages returns perKey messages for each of keys, in the order they
// must be written for per-key order to mean anything: round-robin over the
// keys, sequence numbers rising. Headers include a repeated name and a
// binary value, which a broker must keep byte for byte and in order.
func Messages(keys []string, from, perKey int) []Message {
	var out []Message
	for seq := from; seq < from+perKey; seq++ {
		for _, k := range keys {
			m := Message{Key: k, Seq: seq}
			m.Headers = []kafka.Header{
				{Key: "event-id", Value: []byte(m.ID())},
				{Key: "event-type", Value: []byte("order.created.v1")},
				{Key: "content-type", Value: []byte("application/x-protobuf")},
				{Key: "binary", Value: []byte{0x00, 0xff, byte(seq)}},
				{Key: "binary", Value: []byte{}}, // repeated name, empty value
			}
			out = append(out, m)
		}
	}
	return out
}

// ToKafka converts m to the kafka-go message written for it.
func (m Message) ToKafka() kafka.Message {
	return kafka.Message{Key: []byte(m.Key), Value: []byte(m.ID()), Headers: m.Headers}
}

// WriteEach writes msgs one synchronous call each, as a relay publishing
// one event at a time does, and returns the slowest call's duration.
func WriteEach(ctx context.Context, t testing.TB, w *kafka.Writer, msgs []Message) time.Duration {
	t.Helper()
	var slowest time.Duration
	for _, m := range msgs {
		start := time.Now()
		require.NoError(t, w.WriteMessages(ctx, m.ToKafka()), "write %s", m.ID())
		slowest = max(slowest, time.Since(start))
	}
	return slowest
}

// WriteBatch writes msgs in one call, as a relay flushing a claimed batch
// does.
func WriteBatch(ctx context.Context, t testing.TB, w *kafka.Writer, msgs []Message) {
	t.Helper()
	km := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		km[i] = m.ToKafka()
	}
	require.NoError(t, w.WriteMessages(ctx, km...))
}

// FetchN fetches exactly n messages from r without committing them.
func FetchN(ctx context.Context, t testing.TB, r *kafka.Reader, n int) []kafka.Message {
	t.Helper()
	out := make([]kafka.Message, 0, n)
	for len(out) < n {
		m, err := r.FetchMessage(ctx)
		require.NoError(t, err, "fetched %d of %d messages", len(out), n)
		out = append(out, m)
	}
	return out
}

// RequireSame checks that got carries exactly the headers and value written
// for each message (looked up by value) and returns the sent messages in
// the order they were received.
func RequireSame(t testing.TB, sent []Message, got []kafka.Message) []Message {
	t.Helper()
	byID := make(map[string]Message, len(sent))
	for _, m := range sent {
		byID[m.ID()] = m
	}
	out := make([]Message, 0, len(got))
	for _, g := range got {
		m, ok := byID[string(g.Value)]
		require.True(t, ok, "received a message nobody sent: %q", g.Value)
		require.Equal(t, m.Key, string(g.Key), "key of %s", m.ID())
		require.Equal(t, normalize(m.Headers), normalize(g.Headers), "headers of %s", m.ID())
		out = append(out, m)
	}
	return out
}

// normalize makes a nil and an empty header value compare equal: the wire
// format cannot tell them apart (kafka-go reads both back as empty).
func normalize(hs []kafka.Header) []kafka.Header {
	out := slices.Clone(hs)
	for i := range out {
		if len(out[i].Value) == 0 {
			out[i].Value = []byte{}
		}
	}
	return out
}

// SeqsByKey returns, per key, the sequence numbers in the order received.
func SeqsByKey(ms []Message) map[string][]int {
	out := make(map[string][]int)
	for _, m := range ms {
		out[m.Key] = append(out[m.Key], m.Seq)
	}
	return out
}

// PartitionsByKey returns, per key, the set of partitions its messages
// were read from; with key hashing each set must have one element.
func PartitionsByKey(got []kafka.Message) map[string]map[int]bool {
	out := make(map[string]map[int]bool)
	for _, g := range got {
		k := string(g.Key)
		if out[k] == nil {
			out[k] = make(map[int]bool)
		}
		out[k][g.Partition] = true
	}
	return out
}

// PartitionCounts returns the partition count of every topic the broker
// at addr reports, read with kafka-go's Conn.ReadPartitions.
func PartitionCounts(ctx context.Context, t testing.TB, addr string) map[string]int {
	t.Helper()
	conn, err := kafka.DialContext(ctx, "tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	parts, err := conn.ReadPartitions()
	require.NoError(t, err)
	out := make(map[string]int)
	for _, p := range parts {
		out[p.Topic]++
	}
	return out
}

// CommittedTotal returns the sum over topic's partitions of group's
// committed offsets, partitions without a commit counting as 0. With every
// partition starting at offset 0, it equals the number of messages the
// group has consumed and committed.
func CommittedTotal(ctx context.Context, t testing.TB, addr, topic, group string, partitions int) int64 {
	t.Helper()
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second}
	res, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	require.NoError(t, err)
	require.NoError(t, res.Error)
	var total int64
	for _, p := range res.Topics[topic] {
		require.NoError(t, p.Error, "partition %d", p.Partition)
		if p.CommittedOffset > 0 {
			total += p.CommittedOffset
		}
	}
	return total
}
