// Package grpcclient dials GoodGo services the way every client should: with
// OpenTelemetry tracing (so one trace spans the services) and the caller
// identity forwarded in the x-user-id metadata entry.
package grpcclient

import (
	"context"
	"fmt"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/goodgo/goodgo/platform/caller"
)

// DialOptions are the options Dial uses: plaintext transport (TLS comes with
// authentication), the OpenTelemetry client stats handler and caller
// propagation. Options appended after them take precedence, e.g.
// transport credentials.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		grpc.WithChainUnaryInterceptor(UnaryCallerInterceptor()),
		grpc.WithChainStreamInterceptor(StreamCallerInterceptor()),
	}
}

// Dial returns a client connection to target (a grpc.NewClient target such
// as "dns:///payment:50052" or "127.0.0.1:50052") with DialOptions followed
// by opts. Like grpc.NewClient it does not connect until the first call.
func Dial(target string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(target, append(DialOptions(), opts...)...)
	if err != nil {
		return nil, fmt.Errorf("grpcclient: dial %s: %w", target, err)
	}
	return conn, nil
}

// withCaller forwards the caller id carried by ctx unless the outgoing
// metadata already names a caller. Anonymous callers send nothing, which the
// server reads back as anonymous.
func withCaller(ctx context.Context) context.Context {
	id := caller.ID(ctx)
	if id == caller.Anonymous {
		return ctx
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get(caller.MetadataKey)) > 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, caller.MetadataKey, id)
}

// UnaryCallerInterceptor forwards the caller id of the call's context as the
// x-user-id metadata entry.
func UnaryCallerInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		return invoker(withCaller(ctx), method, req, reply, cc, opts...)
	}
}

// StreamCallerInterceptor forwards the caller id of the stream's context as
// the x-user-id metadata entry.
func StreamCallerInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return streamer(withCaller(ctx), desc, cc, method, opts...)
	}
}
