package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/caller"
)

// errInternal is all a client learns about a panic: its text may hold
// anything, secrets included.
var errInternal = status.Error(codes.Internal, "internal error")

// recoveryOption logs a handler's panic with its stack and answers Internal.
func recoveryOption(logger *slog.Logger) recovery.Option {
	return recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		method, _ := grpc.Method(ctx)
		logger.ErrorContext(ctx, "panic in grpc handler",
			"method", method,
			"panic", fmt.Sprint(p),
			"stack", string(debug.Stack()),
		)
		return errInternal
	})
}

// levelFor logs successes at debug (they are counted by the metrics anyway),
// refusals at debug too (authz logs them itself, once per caller and
// window, and rate-limit refusals are counted), so that a flood of bad
// calls cannot flood the log; errors
// the client caused at info, and errors of the server or its dependencies
// at warn.
func levelFor(code codes.Code) logging.Level {
	switch code {
	case codes.OK, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted:
		return logging.LevelDebug
	case codes.Canceled, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.FailedPrecondition,
		codes.Aborted, codes.OutOfRange:
		return logging.LevelInfo
	default:
		return logging.LevelWarn
	}
}

// logFields renames the middleware's fields to the names our logs, alerts
// and tests use; "" drops a field that says nothing the line does not.
var logFields = map[string]string{
	"grpc.code":       "code",
	"grpc.error":      "", // the whole status text; "error" is its message
	"grpc.start_time": "", // the line's own time, less the duration
}

// loggingOptions make the middleware write one line per call, "grpc call",
// with method, code, duration_ms, caller and error. The call's context
// carries its trace id onto the line.
func loggingOptions() []logging.Option {
	return []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithLevels(levelFor),
		logging.WithDisableLoggingFields(logging.SystemTag[0], logging.ComponentFieldKey,
			logging.ServiceFieldKey, logging.MethodFieldKey, logging.MethodTypeFieldKey),
		logging.WithFieldsFromContextAndCallMeta(func(ctx context.Context, c interceptors.CallMeta) logging.Fields {
			f := logging.Fields{"method", c.FullMethod()}
			if id := caller.From(ctx); !id.IsZero() {
				f = append(f, "caller", id.String())
			}
			return f
		}),
		logging.WithDurationField(func(d time.Duration) logging.Fields {
			return logging.Fields{"duration_ms", float64(d.Microseconds()) / 1000}
		}),
		logging.WithErrorFields(func(err error) logging.Fields {
			return logging.Fields{"error", status.Convert(err).Message()}
		}),
	}
}

// slogLogger adapts logger to the middleware.
func slogLogger(logger *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, level logging.Level, _ string, fields ...any) {
		if !logger.Enabled(ctx, slog.Level(level)) {
			return
		}
		attrs := make([]slog.Attr, 0, len(fields)/2)
		for i := 0; i+1 < len(fields); i += 2 {
			key, _ := fields[i].(string)
			if renamed, ok := logFields[key]; ok {
				key = renamed
			}
			if key != "" {
				attrs = append(attrs, slog.Any(key, fields[i+1]))
			}
		}
		logger.LogAttrs(ctx, slog.Level(level), "grpc call", attrs...)
	})
}
