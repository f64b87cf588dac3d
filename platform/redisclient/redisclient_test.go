package redisclient_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/redisclient"
)

func TestConnectToSingleServer(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	client, err := redisclient.Connect(t.Context(), config.Redis{URL: "redis://127.0.0.1:6379/0"}, logger, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	require.IsType(t, &redis.Client{}, client)
	require.Contains(t, logs.String(), `"msg":"redis connected"`)

	key := "test:redisclient:" + t.Name() + ":" + time.Now().Format(time.RFC3339Nano)
	require.NoError(t, client.Set(t.Context(), key, "v", time.Minute).Err())
	t.Cleanup(func() { client.Del(context.Background(), key) })
	got, err := client.Get(t.Context(), key).Result()
	require.NoError(t, err)
	require.Equal(t, "v", got)
}

func TestConnectSelectsDatabaseFromURL(t *testing.T) {
	t.Parallel()
	client, err := redisclient.Connect(t.Context(), config.Redis{URL: "redis://127.0.0.1:6379/3"}, nil, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })
	info, err := client.ClientInfo(t.Context()).Result()
	require.NoError(t, err)
	require.Equal(t, 3, info.DB)
}

func TestConnectFailsWithinBoundWhenUnreachable(t *testing.T) {
	t.Parallel()
	start := time.Now()
	client, err := redisclient.Connect(t.Context(), config.Redis{URL: "redis://:s3cret-pw@127.0.0.1:1/0"}, nil, time.Second)
	elapsed := time.Since(start)
	require.Nil(t, client)
	require.ErrorContains(t, err, "redis at 127.0.0.1:1 unreachable after 1s:")
	require.NotContains(t, err.Error(), "s3cret-pw")
	require.GreaterOrEqual(t, elapsed, time.Second)
	require.Less(t, elapsed, 3*time.Second)
}

func TestConnectClusterAddrsTakePrecedence(t *testing.T) {
	t.Parallel()
	// No cluster runs here: the point is that addrs, not the reachable
	// single server in the URL, are dialled.
	client, err := redisclient.Connect(t.Context(), config.Redis{URL: "redis://127.0.0.1:6379/0", Addrs: []string{"127.0.0.1:1", "127.0.0.1:2"}}, nil, 300*time.Millisecond)
	require.Nil(t, client)
	require.ErrorContains(t, err, "redis at cluster 127.0.0.1:1,127.0.0.1:2 unreachable")
}

func TestConnectRejectsBadURL(t *testing.T) {
	t.Parallel()
	_, err := redisclient.Connect(t.Context(), config.Redis{URL: "http://127.0.0.1:6379"}, nil, time.Second)
	require.ErrorContains(t, err, "redis: parse REDIS_URL")
	_, err = redisclient.Connect(t.Context(), config.Redis{}, nil, time.Second)
	require.Error(t, err)
	_, err = redisclient.Connect(t.Context(), config.Redis{URL: "redis://:s3cret-pw@127.0.0.1:notaport/0"}, nil, time.Second)
	require.ErrorContains(t, err, "redis: parse REDIS_URL")
	require.NotContains(t, err.Error(), "s3cret-pw")
}

// TestSpansRecordNeitherValuesNorCallers: a command inside a trace gets a
// child span that names the command but holds neither its arguments (an
// idempotency record holds a stored reply) nor the calling function, which
// costs a stack walk per command. Not parallel: it swaps the global tracer
// provider.
func TestSpansRecordNeitherValuesNorCallers(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	client, err := redisclient.Connect(t.Context(), config.Redis{URL: "redis://127.0.0.1:6379/0"}, nil, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })

	ctx, parent := otel.Tracer("test").Start(t.Context(), "request")
	key := "test:redisclient:" + t.Name() + ":" + time.Now().Format(time.RFC3339Nano)
	const secret = "Jane Roe, 12 Main Street"
	require.NoError(t, client.Set(ctx, key, secret, time.Minute).Err())
	_, err = client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, key)
		p.Del(ctx, key)
		return nil
	})
	require.NoError(t, err)
	parent.End()

	var names []string
	for _, s := range rec.Ended() {
		if s.Parent().SpanID() != parent.SpanContext().SpanID() {
			continue
		}
		names = append(names, s.Name())
		for _, a := range s.Attributes() {
			require.NotContains(t, a.Value.String(), "Main Street", "span %s attribute %s", s.Name(), a.Key)
			require.False(t, strings.HasPrefix(string(a.Key), "code."), "span %s has %s: the caller is not recorded", s.Name(), a.Key)
		}
	}
	require.Equal(t, []string{"set", "redis.pipeline get del"}, names)
}
