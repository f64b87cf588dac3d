package grpcserver

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/platform/caller"
)

// BenchmarkCallLog is the per-call cost of the "grpc call" line around a
// successful call, beside no interceptor at all: at the services' default
// level (info) a success is logged at debug and dropped, so what remains is
// the middleware's own field building; at debug the line is written (to
// io.Discard through the JSON handler the binaries use).
func BenchmarkCallLog(b *testing.B) {
	ctx := caller.With(context.Background(), caller.Identity{Service: "orchestrator", User: "u-1"})
	info := &grpc.UnaryServerInfo{FullMethod: "/goodgo.order.v1.OrderService/ConfirmOrder"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for _, c := range []struct {
		name  string
		level slog.Level
		log   bool
	}{
		{"none", slog.LevelInfo, false},
		{"level=info", slog.LevelInfo, true},
		{"level=debug", slog.LevelDebug, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			call := grpc.UnaryServerInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				return h(ctx, req)
			})
			if c.log {
				logger := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: c.level}))
				call = logging.UnaryServerInterceptor(slogLogger(logger), loggingOptions()...)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := call(ctx, nil, info, handler); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
