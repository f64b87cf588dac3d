package telemetry_test

import (
	"context"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	collectortracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/platform/telemetry"
)

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

	// The global provider is ours: trace ids exist even without an
	// exporter, and the W3C propagator carries them. Spans no one exports
	// are not recorded.
	require.Same(t, tel.TracerProvider, otel.GetTracerProvider())
	spanCtx, span := otel.Tracer("test").Start(ctx, "op")
	defer span.End()
	require.True(t, span.SpanContext().IsValid())
	require.False(t, span.SpanContext().IsSampled())
	require.False(t, span.IsRecording())
	carrier := propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(spanCtx, carrier)
	require.Contains(t, carrier["traceparent"], span.SpanContext().TraceID().String())

	// A caller's sampled trace stays sampled through this binary, for the
	// binaries after it that export.
	sampled := otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
	})
	childCtx, child := otel.Tracer("test").Start(sampled, "handle")
	defer child.End()
	require.True(t, child.SpanContext().IsSampled())
	carrier = propagation.MapCarrier{}
	otel.GetTextMapPropagator().Inject(childCtx, carrier)
	require.Equal(t, "00-4bf92f3577b34da6a3ce929d0e0e4736-"+child.SpanContext().SpanID().String()+"-01", carrier["traceparent"])

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
