package grpcserver

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	middleware "github.com/grpc-ecosystem/go-grpc-middleware/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/caller"
)

// MaxCallerIDLength bounds the x-user-id metadata value: it ends up in Redis
// keys, audit rows and logs.
const MaxCallerIDLength = 128

// callerFromMetadata returns the caller id named by the x-user-id metadata
// entry: ok is false when there is none; err is an InvalidArgument status
// when the entry is malformed.
func callerFromMetadata(ctx context.Context) (id string, ok bool, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(caller.MetadataKey)
	switch {
	case len(vals) == 0:
		return "", false, nil
	case len(vals) > 1:
		return "", false, status.Errorf(codes.InvalidArgument, "%s: must be given once", caller.MetadataKey)
	}
	id = vals[0]
	switch {
	case id == "":
		return "", false, status.Errorf(codes.InvalidArgument, "%s: must not be empty", caller.MetadataKey)
	case len(id) > MaxCallerIDLength:
		return "", false, status.Errorf(codes.InvalidArgument, "%s: longer than %d bytes", caller.MetadataKey, MaxCallerIDLength)
	case !printableASCII(id):
		return "", false, status.Errorf(codes.InvalidArgument, "%s: must be printable ASCII", caller.MetadataKey)
	}
	return id, true, nil
}

// printableASCII is the gRPC rule for text metadata values (0x20-0x7E);
// grpc-go clients enforce it, other clients might not.
func printableASCII(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// withCaller puts the caller named by the metadata into ctx.
func withCaller(ctx context.Context) (context.Context, error) {
	id, ok, err := callerFromMetadata(ctx)
	if err != nil {
		return nil, err
	}
	if ok {
		ctx = caller.WithID(ctx, id)
	}
	return ctx, nil
}

func unaryCaller() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, err := withCaller(ctx)
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func streamCaller() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, err := withCaller(ss.Context())
		if err != nil {
			return err
		}
		wrapped := middleware.WrapServerStream(ss)
		wrapped.WrappedContext = ctx
		return handler(srv, wrapped)
	}
}

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
// errors the client caused at info, and errors of the server or its
// dependencies at warn.
func levelFor(code codes.Code) slog.Level {
	switch code {
	case codes.OK:
		return slog.LevelDebug
	case codes.Canceled, codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.PermissionDenied, codes.Unauthenticated, codes.FailedPrecondition,
		codes.Aborted, codes.OutOfRange, codes.ResourceExhausted:
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
	if id, ok, _ := callerFromMetadata(ctx); ok {
		attrs = append(attrs, slog.String("caller", id))
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
