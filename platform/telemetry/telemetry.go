// Package telemetry sets up a binary's traces and metrics: an OpenTelemetry
// tracer provider (exporting over OTLP when the standard OTEL_* variables
// ask for it) installed as the global provider together with the W3C
// propagators, and a Prometheus registry with the Go runtime and process
// collectors. Logs are platform/logs'.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Telemetry is a binary's metrics registry and tracer provider. Create it
// once in main with Setup and call Shutdown last, after the servers have
// stopped, so that the final spans are flushed.
type Telemetry struct {
	// Registry holds every metric of the binary; serve it on /metrics
	// (opshttp) and pass it as the prometheus.Registerer to every package
	// that defines metrics.
	Registry *prometheus.Registry
	// TracerProvider is also installed as the global provider, which is
	// what otelgrpc and the Kafka header propagation use.
	TracerProvider *sdktrace.TracerProvider
	// Exporting reports whether spans are sent to an OTLP collector.
	Exporting bool
}

// Setup builds the Telemetry of service at version and installs the tracer
// provider and the W3C tracecontext + baggage propagator as OpenTelemetry
// globals.
//
// Traces follow the standard OpenTelemetry variables, read through lookup
// (os.LookupEnv in main): spans are exported with OTLP over gRPC only when
// OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set,
// and OTEL_SDK_DISABLED=true (any case) turns
// sampling and export off. The exporter, sampler and
// resource detectors of the SDK read their own OTEL_* variables (endpoint,
// headers, OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES)
// from the process environment; those override service and version.
//
// Without an exporter spans are still created, so trace ids propagate to
// downstream services and appear in logs, but the binary's own traces are
// not sampled (not recorded); a sampled caller's trace stays sampled.
func Setup(ctx context.Context, service, version string, lookup func(string) (string, bool)) (*Telemetry, error) {
	reg := prometheus.NewRegistry()
	if err := errors.Join(
		reg.Register(collectors.NewGoCollector()),
		reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})),
	); err != nil {
		return nil, fmt.Errorf("telemetry: register runtime collectors: %w", err)
	}

	// Detectors later in the list override earlier ones, so the OTEL_*
	// variables win over the values compiled into the binary.
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(version)),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource (check OTEL_RESOURCE_ATTRIBUTES): %w", err)
	}

	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	exporting := false
	switch {
	case sdkDisabled(lookup):
		// The SDK has no switch of its own for this variable: never sampling
		// makes every span a cheap non-recording one and exports nothing.
		opts = append(opts, sdktrace.WithSampler(sdktrace.NeverSample()))
	case isSet(lookup, "OTEL_EXPORTER_OTLP_ENDPOINT") || isSet(lookup, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
		// The exporter connects lazily, so an absent collector does not stop
		// the binary; spans are dropped (and counted by the SDK) meanwhile.
		exp, err := otlptracegrpc.New(ctx)
		if err != nil {
			return nil, fmt.Errorf("telemetry: OTLP trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
		exporting = true
	default:
		// Nothing exports this binary's spans: recording them (timings,
		// attributes, events for no one) cost 10-18 % of the services' CPU
		// in BenchmarkOrderSaga. Its own traces are therefore not sampled,
		// which still gives every span a trace id for the logs and the
		// propagators; a caller's sampled trace stays sampled, so that the
		// binaries after this one that do export still record it.
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	}
	tp := sdktrace.NewTracerProvider(opts...)

	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
		propagation.TraceContext{}, propagation.Baggage{},
	))
	return &Telemetry{Registry: reg, TracerProvider: tp, Exporting: exporting}, nil
}

// Shutdown flushes pending spans and stops the tracer provider. It returns
// when done or when ctx is done, whichever is first.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if err := t.TracerProvider.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: shutdown tracer provider: %w", err)
	}
	return nil
}

func isSet(lookup func(string) (string, bool), name string) bool {
	v, ok := lookup(name)
	return ok && strings.TrimSpace(v) != ""
}

// sdkDisabled follows the OpenTelemetry specification for boolean
// variables: only "true", in any case, is true.
func sdkDisabled(lookup func(string) (string, bool)) bool {
	v, _ := lookup("OTEL_SDK_DISABLED")
	return strings.EqualFold(strings.TrimSpace(v), "true")
}

// FlushTimeout bounds Close: exporting the last spans must not hold up a
// shutdown that Kubernetes is timing.
const FlushTimeout = 5 * time.Second

// Close flushes and stops the tracer provider within FlushTimeout, even when
// ctx is already cancelled (it usually is: the binary is stopping). A failure
// is logged, not returned: the binary's work is done either way.
func (t *Telemetry) Close(ctx context.Context, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), FlushTimeout)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		logger.WarnContext(ctx, "telemetry shutdown", "error", err)
	}
}
