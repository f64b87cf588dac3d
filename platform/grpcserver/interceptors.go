package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/caller"
)

// errInternal is all a client learns about a panic: its text may hold
// anything, secrets included.
var errInternal = status.Error(codes.Internal, "internal error")

func logPanic(ctx context.Context, logger *slog.Logger, method string, p any) {
	logger.ErrorContext(ctx, "panic in grpc handler",
		"method", method,
		"panic", fmt.Sprint(p),
		"stack", string(debug.Stack()),
	)
}

func unaryRecovery(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				logPanic(ctx, logger, info.FullMethod, p)
				resp, err = nil, errInternal
			}
		}()
		return handler(ctx, req)
	}
}

func streamRecovery(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				logPanic(ss.Context(), logger, info.FullMethod, p)
				err = errInternal
			}
		}()
		return handler(srv, ss)
	}
}

// levelFor logs successes at debug (they are counted by the metrics anyway),
// refusals at debug too (authz logs them itself, once per caller and
// window, and rate-limit refusals are counted), so that a flood of bad
// calls cannot flood the log; errors
// the client caused at info, and errors of the server or its dependencies
// at warn.
func levelFor(code codes.Code) slog.Level {
	switch code {
	case codes.OK, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted:
		return slog.LevelDebug
	case codes.Canceled, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.FailedPrecondition,
		codes.Aborted, codes.OutOfRange:
		return slog.LevelInfo
	default:
		return slog.LevelWarn
	}
}

// logCall writes one line per call. ctx is the call's context, so the line
// carries the call's trace id.
func logCall(ctx context.Context, logger *slog.Logger, method string, start time.Time, err error) {
	code := status.Code(err)
	level := levelFor(code)
	if !logger.Enabled(ctx, level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
	}
	if id := caller.From(ctx); !id.IsZero() {
		attrs = append(attrs, slog.String("caller", id.String()))
	}
	if err != nil {
		attrs = append(attrs, slog.String("error", status.Convert(err).Message()))
	}
	logger.LogAttrs(ctx, level, "grpc call", attrs...)
}

func unaryLogging(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		logCall(ctx, logger, info.FullMethod, start, err)
		return resp, err
	}
}

func streamLogging(logger *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		logCall(ss.Context(), logger, info.FullMethod, start, err)
		return err
	}
}
