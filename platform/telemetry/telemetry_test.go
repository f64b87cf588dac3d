package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/platform/telemetry"
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
	log := telemetry.NewLogger(&buf, "order", slog.LevelInfo)

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

func noEnv(string) (string, bool) { return "", false }

func TestSetupWithoutExporter(t *testing.T) {
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, "order", "v1.2.3", noEnv)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	require.False(t, tel.Exporting)

	families, err := tel.Registry.Gather()
	require.NoError(t, err)
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	require.True(t, names["go_goroutines"], "Go collector registered")
	require.True(t, names["process_start_time_seconds"], "process collector registered")

	// The global provider is ours and records spans, so trace ids exist even
	// without an exporter, and the W3C propagator carries them.
	require.Same(t, tel.TracerProvider, otel.GetTracerProvider())
	spanCtx, span := otel.Tracer("test").Start(ctx, "op")
	defer span.End()
	require.True(t, span.SpanContext().IsValid())
	require.True(t, span.SpanContext().IsSampled())
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(spanCtx, carrier)
	require.Contains(t, carrier["traceparent"], span.SpanContext().TraceID().String())

}

func TestSetupHonoursSDKDisabled(t *testing.T) {
	env := map[string]string{
		"OTEL_SDK_DISABLED":           "TRUE",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
	}
	tel, err := telemetry.Setup(context.Background(), "order", "dev", func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, tel.Shutdown(context.Background())) })
	require.False(t, tel.Exporting)
	_, span := tel.TracerProvider.Tracer("test").Start(context.Background(), "op")
	defer span.End()
	require.False(t, span.SpanContext().IsSampled())
	require.False(t, span.IsRecording())
}

// collector is an in-process OTLP/gRPC trace receiver.
type collector struct {
	collectortracepb.UnimplementedTraceServiceServer
	mu   sync.Mutex
	reqs []*collectortracepb.ExportTraceServiceRequest
}

func (c *collector) Export(_ context.Context, req *collectortracepb.ExportTraceServiceRequest) (*collectortracepb.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, req)
	return &collectortracepb.ExportTraceServiceResponse{}, nil
}

func (c *collector) received() []*collectortracepb.ExportTraceServiceRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*collectortracepb.ExportTraceServiceRequest(nil), c.reqs...)
}

func TestSetupExportsOverOTLPWhenEndpointSet(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	col := &collector{}
	srv := grpc.NewServer()
	collectortracepb.RegisterTraceServiceServer(srv, col)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	// The exporter and resource detectors read the process environment
	// themselves; Setup's lookup decides whether to export at all.
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://"+lis.Addr().String())
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "10")

	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, "payment", "v9", os.LookupEnv)
	require.NoError(t, err)
	require.True(t, tel.Exporting)

	_, span := otel.Tracer("test").Start(ctx, "exported-span", trace.WithSpanKind(trace.SpanKindServer))
	wantTrace := span.SpanContext().TraceID()
	span.End()

	shutdownCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	require.NoError(t, tel.Shutdown(shutdownCtx))

	reqs := col.received()
	require.NotEmpty(t, reqs)
	rs := reqs[0].GetResourceSpans()[0]
	attrs := map[string]string{}
	for _, kv := range rs.GetResource().GetAttributes() {
		attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	require.Equal(t, "payment", attrs["service.name"])
	require.Equal(t, "v9", attrs["service.version"])
	require.Equal(t, "test", attrs["deployment.environment.name"])
	got := rs.GetScopeSpans()[0].GetSpans()[0]
	require.Equal(t, "exported-span", got.GetName())
	require.Equal(t, wantTrace[:], got.GetTraceId())
}

func TestSetupRejectsMalformedResourceAttributes(t *testing.T) {
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "no-equals-sign")
	_, err := telemetry.Setup(context.Background(), "order", "dev", noEnv)
	require.ErrorContains(t, err, "OTEL_RESOURCE_ATTRIBUTES")
}

func TestOrDiscardKeepsALoggerAndReplacesNil(t *testing.T) {
	t.Parallel()
	l := slog.New(slog.NewJSONHandler(io.Discard, nil))
	require.Same(t, l, telemetry.OrDiscard(l))
	d := telemetry.OrDiscard(nil)
	require.NotNil(t, d)
	require.False(t, d.Enabled(context.Background(), slog.LevelError), "a nil logger becomes one that logs nothing")
}
