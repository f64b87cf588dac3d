package logs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/goodgo/goodgo/platform/logs"
)

func decodeLines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

func TestNewLoggerAddsServiceAndTraceIDs(t *testing.T) {
	var buf bytes.Buffer
	log := logs.NewLogger(&buf, "order", slog.LevelInfo)

	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "op")
	defer span.End()

	log.InfoContext(ctx, "with span", "k", "v")
	log.Info("without span")
	log.Debug("below level")
	log.With("saga_id", "s1").InfoContext(ctx, "derived logger")

	lines := decodeLines(t, &buf)
	require.Len(t, lines, 3)

	sc := span.SpanContext()
	require.Equal(t, "with span", lines[0]["msg"])
	require.Equal(t, "order", lines[0]["service"])
	require.Equal(t, "v", lines[0]["k"])
	require.Equal(t, sc.TraceID().String(), lines[0]["trace_id"])
	require.Equal(t, sc.SpanID().String(), lines[0]["span_id"])

	require.Equal(t, "without span", lines[1]["msg"])
	require.Equal(t, "order", lines[1]["service"])
	require.NotContains(t, lines[1], "trace_id")
	require.NotContains(t, lines[1], "span_id")

	require.Equal(t, "s1", lines[2]["saga_id"])
	require.Equal(t, sc.TraceID().String(), lines[2]["trace_id"])
}

func TestOrDiscardKeepsALoggerAndReplacesNil(t *testing.T) {
	t.Parallel()
	l := slog.New(slog.NewJSONHandler(io.Discard, nil))
	require.Same(t, l, logs.OrDiscard(l))
	d := logs.OrDiscard(nil)
	require.NotNil(t, d)
	require.False(t, d.Enabled(context.Background(), slog.LevelError), "a nil logger becomes one that logs nothing")
}
