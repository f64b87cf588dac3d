// Package childspans keeps instrumented clients inside existing traces.
package childspans

import (
	"context"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// Only wraps tp so that its tracers start spans only inside an
// existing, sampled trace: otherwise Start returns the context unchanged and
// its span, which does not record. The database and Redis clients use it
// (platform/postgres, platform/redisclient): a request's queries show in its
// trace, while the background loops that poll (the relay, the saga
// recovery, lease renewals) do not flood the collector with one root trace
// per query. Inside an unsampled trace (every trace of a binary that
// exports nothing) a child would not be recorded either, under the
// parent-based samplers telemetry.Setup installs, yet starting it cost 2 %
// of each service's CPU in the order saga (docs/benchmarks.md).
func Only(tp trace.TracerProvider) trace.TracerProvider {
	return childOnlyProvider{tp: tp}
}

type childOnlyProvider struct {
	embedded.TracerProvider
	tp trace.TracerProvider
}

func (p childOnlyProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return childOnlyTracer{t: p.tp.Tracer(name, opts...)}
}

type childOnlyTracer struct {
	embedded.Tracer
	t trace.Tracer
}

// Wanted reports whether a child of ctx's span is to be made: inside a
// sampled trace. Hooks that would build a span's name and attributes ask
// first (platform/redisclient).
func Wanted(ctx context.Context) bool {
	return trace.SpanContextFromContext(ctx).IsSampled()
}

func (t childOnlyTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if !Wanted(ctx) {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.t.Start(ctx, name, opts...)
}
