// Package logs is how GoodGo logs: JSON lines through log/slog, each
// stamped with the service and, when the context holds a span, its trace
// and span ids (NewLogger); OrDiscard is what a constructor taking an
// optional logger does with a nil one. It depends on OpenTelemetry's trace
// API only, so that low-level packages (postgres, redisclient) can log
// without pulling in the SDK that platform/telemetry sets up.
package logs

import (
	"context"
	"io"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added by NewLogger.
const (
	KeyService = "service"
	KeyTraceID = "trace_id"
	KeySpanID  = "span_id"
)

// NewLogger returns a JSON logger writing to w at level and above. Every
// record carries the attribute service, and, when the context passed to the
// logging call (the *Context methods: InfoContext, Log, ...) holds a valid
// OpenTelemetry span context, trace_id and span_id so that a log line can be
// found from its trace and back.
//
// The trace attributes are added when the record is handled, so after
// WithGroup they land inside the open group.
func NewLogger(w io.Writer, service string, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(traceHandler{next: h}).With(KeyService, service)
}

// traceHandler adds the span context of the record's context to the record.
type traceHandler struct {
	next slog.Handler
}

func (h traceHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(
			slog.String(KeyTraceID, sc.TraceID().String()),
			slog.String(KeySpanID, sc.SpanID().String()),
		)
	}
	return h.next.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{next: h.next.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{next: h.next.WithGroup(name)}
}

// OrDiscard returns logger, or a logger that discards everything when it
// is nil: what every constructor taking an optional logger does with it.
func OrDiscard(logger *slog.Logger) *slog.Logger {
	if logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return logger
}
