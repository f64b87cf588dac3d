package grpcserver

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// healthServer is grpc's health server with one change: Watch streams end
// when the server starts shutting down, after sending NOT_SERVING. The stock
// Watch stays open until the client leaves, which would hold GracefulStop
// for the whole ShutdownTimeout whenever a client uses gRPC's client-side
// health checking (it watches).
type healthServer struct {
	*health.Server
	stopping <-chan struct{}
}

func (h healthServer) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-h.stopping:
			cancel()
		case <-ctx.Done():
		}
	}()
	ws := &watchStream{Health_WatchServer: stream, ctx: ctx, last: -1}
	err := h.Server.Watch(req, ws)
	select {
	case <-h.stopping:
		// The inner Watch may have ended before sending the final status.
		if ws.last != healthpb.HealthCheckResponse_NOT_SERVING {
			_ = stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING})
		}
		return status.Error(codes.Unavailable, "server shutting down")
	default:
		return err
	}
}

// watchStream replaces the stream's context so Watch can be ended from
// outside, and remembers the last status sent. Only the goroutine running
// Watch uses it.
type watchStream struct {
	healthpb.Health_WatchServer
	ctx  context.Context
	last healthpb.HealthCheckResponse_ServingStatus
}

func (w *watchStream) Context() context.Context { return w.ctx }

func (w *watchStream) Send(resp *healthpb.HealthCheckResponse) error {
	if err := w.Health_WatchServer.Send(resp); err != nil {
		return err
	}
	w.last = resp.GetStatus()
	return nil
}

var _ grpc.ServerStream = (*watchStream)(nil)
