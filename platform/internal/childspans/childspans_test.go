package childspans_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/goodgo/goodgo/platform/internal/childspans"
)

func TestOnly(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tracer := childspans.Only(tp).Tracer("test")

	ctx, orphan := tracer.Start(context.Background(), "orphan")
	require.False(t, orphan.IsRecording(), "a span without a parent is not recorded")
	orphan.End()
	require.Equal(t, context.Background(), ctx)

	// Inside a trace that is not sampled: no child either, not even a
	// non-recording one of its own.
	unsampled := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()), sdktrace.WithSpanProcessor(rec))
	quietCtx, quiet := unsampled.Tracer("test").Start(context.Background(), "request")
	require.True(t, quiet.SpanContext().IsValid())
	childCtx, none := childspans.Only(unsampled).Tracer("test").Start(quietCtx, "query")
	require.Equal(t, quietCtx, childCtx)
	require.Equal(t, quiet.SpanContext(), none.SpanContext())
	quiet.End()

	parentCtx, parent := tp.Tracer("test").Start(context.Background(), "request")
	_, child := tracer.Start(parentCtx, "query")
	require.True(t, child.IsRecording())
	child.End()
	parent.End()

	ended := rec.Ended()
	require.Len(t, ended, 2)
	require.Equal(t, "query", ended[0].Name())
	require.Equal(t, parent.SpanContext().TraceID(), ended[0].SpanContext().TraceID())
}
