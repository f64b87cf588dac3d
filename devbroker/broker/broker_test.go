package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/devbroker/internal/kafkatest"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

// start runs a broker on a free loopback port for the test's lifetime.
func start(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	b, err := broker.Start(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(b.Close)
	return b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestStart_CreatesTopicsWithPartitionCount(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  broker.Config
		want map[string]int
	}{
		{
			name: "defaults are the project's topics with 6 partitions",
			cfg:  broker.Config{},
			want: map[string]int{event.TopicOrder: 6, event.TopicPayment: 6, event.TopicInventory: 6},
		},
		{
			name: "configured topics and count, duplicates ignored",
			cfg:  broker.Config{Topics: []string{"a.events", "b_events", "a.events"}, Partitions: 3},
			want: map[string]int{"a.events": 3, "b_events": 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := start(t, tt.cfg)
			// All topics the broker reports: nothing missing and nothing
			// extra (no internal topics leak into client listings).
			require.Equal(t, tt.want, kafkatest.PartitionCounts(testCtx(t), t, b.Addr()))
		})
	}
}

func TestStart_PortZeroReportsRealPort(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"127.0.0.1:0", ":0"} {
		t.Run(addr, func(t *testing.T) {
			t.Parallel()
			b := start(t, broker.Config{Addr: addr})
			host, port, err := net.SplitHostPort(b.Addr())
			require.NoError(t, err)
			// ":0" listens on every interface; clients are pointed at loopback.
			require.Equal(t, "127.0.0.1", host)
			require.NotEqual(t, "0", port)
			require.Len(t, kafkatest.PartitionCounts(testCtx(t), t, b.Addr()), 3)
		})
	}
}

// TestProduceConsume is the contract the outbox relay and the consumers
// rely on, checked through kafka-go exactly as they use it.
func TestProduceConsume(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	b := start(t, broker.Config{})
	topic, group := event.TopicOrder, "test-produce-consume"

	keys := make([]string, 8)
	for i := range keys {
		keys[i] = fmt.Sprintf("order-%d", i)
	}
	single := kafkatest.Messages(keys, 0, 10)
	batch := kafkatest.Messages(keys, 10, 10)
	sent := append(append([]kafkatest.Message{}, single...), batch...)

	w := kafkatest.NewWriter(b.Addr(), topic)
	defer func() { require.NoError(t, w.Close()) }()
	slowest := kafkatest.WriteEach(ctx, t, w, single)
	// The acks=all round trip itself is fast; a slow write here would
	// mean the Writer waited out its batch timeout (kafka-go's default is
	// 1 s), which the services must not do.
	require.Less(t, slowest, 500*time.Millisecond, "slowest synchronous write")
	kafkatest.WriteBatch(ctx, t, w, batch)

	// First consumer: read and commit a part, then leave (a restart).
	const firstPart = 70
	r1 := kafkatest.NewGroupReader(b.Addr(), topic, group)
	got1 := kafkatest.FetchN(ctx, t, r1, firstPart)
	require.NoError(t, r1.CommitMessages(ctx, got1...))
	require.NoError(t, r1.Close())
	require.Equal(t, int64(firstPart), kafkatest.CommittedTotal(ctx, t, b.Addr(), topic, group, 6))

	// Second consumer in the same group: must resume right after the
	// committed offsets, neither repeating nor skipping.
	r2 := kafkatest.NewGroupReader(b.Addr(), topic, group)
	defer func() { require.NoError(t, r2.Close()) }()
	got2 := kafkatest.FetchN(ctx, t, r2, len(sent)-firstPart)
	require.NoError(t, r2.CommitMessages(ctx, got2...))
	require.Equal(t, int64(len(sent)), kafkatest.CommittedTotal(ctx, t, b.Addr(), topic, group, 6))

	// Headers and values byte for byte.
	recv1 := kafkatest.RequireSame(t, sent, got1)
	recv2 := kafkatest.RequireSame(t, sent, got2)

	// Per key: one partition, and the first consumer's messages followed
	// by the second's are exactly the key's sequence, in order.
	all := append(append([]kafka.Message{}, got1...), got2...)
	parts := kafkatest.PartitionsByKey(all)
	used := map[int]bool{}
	for _, k := range keys {
		require.Len(t, parts[k], 1, "key %s spread over partitions %v", k, parts[k])
		for p := range parts[k] {
			used[p] = true
		}
	}
	require.Greater(t, len(used), 1, "keys should spread over partitions")
	seqs1, seqs2 := kafkatest.SeqsByKey(recv1), kafkatest.SeqsByKey(recv2)
	for _, k := range keys {
		want := make([]int, 20)
		for i := range want {
			want[i] = i
		}
		require.Equal(t, want, append(append([]int{}, seqs1[k]...), seqs2[k]...), "order of key %s", k)
	}
}

func TestAutoCreateTopics(t *testing.T) {
	t.Parallel()

	t.Run("off: an unknown topic is refused", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		b := start(t, broker.Config{})
		w := kafkatest.NewWriter(b.Addr(), "goodgo.typo.events")
		w.MaxAttempts = 1
		defer w.Close()
		err := w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("v")})
		require.ErrorIs(t, err, kafka.UnknownTopicOrPartition)
		require.NotContains(t, kafkatest.PartitionCounts(ctx, t, b.Addr()), "goodgo.typo.events")
	})

	t.Run("on: created with the configured partition count", func(t *testing.T) {
		t.Parallel()
		ctx := testCtx(t)
		b := start(t, broker.Config{AutoCreateTopics: true, Partitions: 4})
		w := kafkatest.NewWriter(b.Addr(), "goodgo.new.events")
		w.AllowAutoTopicCreation = true
		defer w.Close()
		require.NoError(t, w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("v")}))
		require.Equal(t, 4, kafkatest.PartitionCounts(ctx, t, b.Addr())["goodgo.new.events"])
	})
}

func TestAdvertisedAddr(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	b := start(t, broker.Config{Topics: []string{"t"}, Partitions: 1, AdvertisedAddr: "localhost:0"})
	_, port, err := net.SplitHostPort(b.Addr())
	require.NoError(t, err)
	require.Equal(t, "localhost:"+port, b.Addr())

	// Metadata names the advertised host; clients follow it.
	conn, err := kafka.DialContext(ctx, "tcp", b.Addr())
	require.NoError(t, err)
	defer conn.Close()
	brokers, err := conn.Brokers()
	require.NoError(t, err)
	require.Len(t, brokers, 1)
	require.Equal(t, "localhost", brokers[0].Host)

	w := kafkatest.NewWriter(b.Addr(), "t")
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("v")}))
}

func TestStart_AddressInUse(t *testing.T) {
	t.Parallel()
	b := start(t, broker.Config{})
	_, err := broker.Start(t.Context(), broker.Config{Addr: b.Addr()})
	require.ErrorIs(t, err, syscall.EADDRINUSE)
}

// TestClose_FreesPortAndForgetsData documents the in-memory nature: a
// restarted broker has the topics again but none of the records.
func TestClose_FreesPortAndForgetsData(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	cfg := broker.Config{Addr: "127.0.0.1:0", Topics: []string{"t"}, Partitions: 1}
	b1, err := broker.Start(ctx, cfg)
	require.NoError(t, err)
	w := kafkatest.NewWriter(b1.Addr(), "t")
	require.NoError(t, w.WriteMessages(ctx, kafka.Message{Value: []byte("v")}))
	require.Equal(t, int64(1), lastOffset(ctx, t, b1.Addr(), "t"))
	require.NoError(t, w.Close())

	b1.Close()
	b1.Close() // harmless
	_, err = net.DialTimeout("tcp", b1.Addr(), time.Second)
	require.Error(t, err, "port still accepting after Close")

	cfg.Addr = b1.Addr()
	b2 := start(t, cfg)
	require.Equal(t, b1.Addr(), b2.Addr())
	require.Equal(t, int64(0), lastOffset(ctx, t, b2.Addr(), "t"))
}

func lastOffset(ctx context.Context, t *testing.T, addr, topic string) int64 {
	t.Helper()
	conn, err := kafka.DialLeader(ctx, "tcp", addr, topic, 0)
	require.NoError(t, err)
	defer conn.Close()
	off, err := conn.ReadLastOffset()
	require.NoError(t, err)
	return off
}

func TestConfig_Validate(t *testing.T) {
	t.Parallel()
	require.NoError(t, broker.Config{}.Validate(), "the zero value takes defaults")
	tests := []struct {
		cfg  broker.Config
		want string
	}{
		{broker.Config{Addr: "localhost"}, `addr "localhost"`},
		{broker.Config{Addr: "127.0.0.1:http"}, "port must be a number"},
		{broker.Config{AdvertisedAddr: "0.0.0.0:9092"}, "needs a host clients can dial"},
		{broker.Config{AdvertisedAddr: ":9092"}, "needs a host clients can dial"},
		{broker.Config{Partitions: -1}, "partitions -1"},
		{broker.Config{Topics: []string{"ok", "bad topic"}}, `topic "bad topic"`},
		{broker.Config{Topics: []string{".."}}, "not a legal topic name"},
		{broker.Config{Topics: []string{strings.Repeat("x", 250)}}, "longer than 249"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		require.ErrorContains(t, err, tt.want)
		_, err = broker.Start(t.Context(), tt.cfg)
		require.ErrorContains(t, err, tt.want, "Start validates too")
	}
}

// TestLogs checks the lines operators and tests rely on, and that debug
// logging (which hooks every request) leaves the broker working.
func TestLogs(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	var buf lockedBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := broker.Start(ctx, broker.Config{Addr: "127.0.0.1:0", Topics: []string{"x", "y"}, Partitions: 2, Logger: log})
	require.NoError(t, err)

	require.Equal(t, map[string]int{"x": 2, "y": 2}, kafkatest.PartitionCounts(ctx, t, b.Addr()))
	b.Close()

	lines := buf.lines(t)
	require.Equal(t, "listening", lines[0]["msg"])
	require.Equal(t, b.Addr(), lines[0]["addr"])
	require.Equal(t, map[string]any{"msg": "topic created", "topic": "x", "partitions": float64(2)}, pick(lines[1], "msg", "topic", "partitions"))
	require.Equal(t, map[string]any{"msg": "topic created", "topic": "y", "partitions": float64(2)}, pick(lines[2], "msg", "topic", "partitions"))
	require.Contains(t, msgs(lines), "connection opened")
	require.Contains(t, lines, findLine(lines, "request", "api", "Metadata"))
	// Not necessarily last: kfake notices closed client connections on
	// its own goroutines.
	require.Contains(t, msgs(lines), "stopped")
}

func pick(m map[string]any, keys ...string) map[string]any {
	out := make(map[string]any, len(keys))
	for _, k := range keys {
		out[k] = m[k]
	}
	return out
}

func msgs(lines []map[string]any) []any {
	out := make([]any, len(lines))
	for i, l := range lines {
		out[i] = l["msg"]
	}
	return out
}

// findLine returns the first line with msg and key=value, or nil.
func findLine(lines []map[string]any, msg, key string, value any) map[string]any {
	for _, l := range lines {
		if l["msg"] == msg && l[key] == value {
			return l
		}
	}
	return nil
}

// lockedBuffer is a log sink safe for the broker's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for l := range strings.Lines(b.buf.String()) {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), "log line %q", l)
		out = append(out, m)
	}
	require.NotEmpty(t, out)
	return out
}
