package redisclient

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestTracingCostsNothingOutsideASampledTrace: where no span is recorded
// (every trace of a binary that exports nothing), a command or pipeline
// passes through the hook without allocating, so without building a span
// name or attributes for no one.
func TestTracingCostsNothingOutsideASampledTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())), sdktrace.WithSpanProcessor(rec))
	h := newTracing(tp.Tracer("test"), "127.0.0.1:6379")
	ctx, request := tp.Tracer("test").Start(context.Background(), "request")
	defer request.End()
	require.True(t, request.SpanContext().IsValid(), "inside a trace, not sampled")

	cmds := []redis.Cmder{redis.NewStringCmd(ctx, "get", "k"), redis.NewIntCmd(ctx, "del", "k")}
	var saw context.Context
	pipeline := h.ProcessPipelineHook(func(ctx context.Context, _ []redis.Cmder) error { saw = ctx; return nil })
	process := h.ProcessHook(func(context.Context, redis.Cmder) error { return nil })
	allocs := testing.AllocsPerRun(100, func() {
		require.NoError(t, pipeline(ctx, cmds))
		require.NoError(t, process(ctx, cmds[0]))
	})
	require.Zero(t, allocs)
	require.Equal(t, ctx, saw, "the context goes on unchanged")
	require.Empty(t, rec.Ended())
}

// TestTracingRecordsFailuresNotMisses: in a sampled trace, a failed command
// marks its span failed, while redis.Nil (no such key) is an answer.
func TestTracingRecordsFailuresNotMisses(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := newTracing(tp.Tracer("test"), "127.0.0.1:6379")
	ctx, request := tp.Tracer("test").Start(context.Background(), "request")
	failure := errors.New("LOADING Redis is loading the dataset in memory")
	for _, err := range []error{redis.Nil, failure} {
		got := h.ProcessHook(func(context.Context, redis.Cmder) error { return err })(ctx, redis.NewStringCmd(ctx, "get", "k"))
		require.ErrorIs(t, got, err)
	}
	got := h.ProcessPipelineHook(func(context.Context, []redis.Cmder) error { return failure })(ctx,
		[]redis.Cmder{redis.NewStringCmd(ctx, "set", "k", "v"), redis.NewStringCmd(ctx, "set", "j", "v"), redis.NewIntCmd(ctx, "pexpire", "k", 1)})
	require.ErrorIs(t, got, failure)
	request.End()

	spans := rec.Ended()
	require.Len(t, spans, 4)
	require.Equal(t, "get", spans[0].Name())
	require.Equal(t, codes.Unset, spans[0].Status().Code, "redis.Nil is not a failure")
	require.Equal(t, "get", spans[1].Name())
	require.Equal(t, codes.Error, spans[1].Status().Code)
	require.Equal(t, "redis.pipeline set pexpire", spans[2].Name())
	require.Equal(t, codes.Error, spans[2].Status().Code)
	for _, s := range spans[:3] {
		require.Equal(t, request.SpanContext().SpanID(), s.Parent().SpanID())
	}
}
