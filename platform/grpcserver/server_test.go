package grpcserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/telemetry"
)

// spans records every span started and ended in this test binary.
var spans = tracetest.NewSpanRecorder()

func TestMain(m *testing.M) {
	// What telemetry.Setup installs in a binary: spans are recorded and
	// propagated, so trace ids reach the server's logs.
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	otel.SetTextMapPropagator(propagation.TraceContext{})
	os.Exit(m.Run())
}

// testService is a hand-written service so that these tests need no
// generated code: Whoami returns the caller id, Panic panics, Block waits
// until released or cancelled, WatchCaller streams the caller id once.
type testService struct {
	started chan struct{}
	release chan struct{}
	// Stubborn: cutOff is closed when its context ends; it returns only
	// after release, setting finished first.
	cutOff   chan struct{}
	finished atomic.Bool
}

const svcName = "goodgo.test.v1.TestService"

func unaryHandler(method string, fn func(ctx context.Context) (any, error)) grpc.MethodHandler {
	return func(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := new(emptypb.Empty)
		if err := dec(in); err != nil {
			return nil, err
		}
		h := func(ctx context.Context, _ any) (any, error) { return fn(ctx) }
		if interceptor == nil {
			return h(ctx, in)
		}
		return interceptor(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/" + svcName + "/" + method}, h)
	}
}

func (s *testService) desc() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: svcName,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "Whoami", Handler: unaryHandler("Whoami", func(ctx context.Context) (any, error) {
				return wrapperspb.String(caller.ID(ctx)), nil
			})},
			{MethodName: "Panic", Handler: unaryHandler("Panic", func(context.Context) (any, error) {
				panic("secret-db-password in panic text")
			})},
			{MethodName: "Stubborn", Handler: unaryHandler("Stubborn", func(ctx context.Context) (any, error) {
				close(s.started)
				<-ctx.Done()
				close(s.cutOff)
				<-s.release // e.g. a database call that finishes its work anyway
				s.finished.Store(true)
				return wrapperspb.String("finished late"), nil
			})},
			{MethodName: "Block", Handler: unaryHandler("Block", func(ctx context.Context) (any, error) {
				close(s.started)
				select {
				case <-s.release:
					return wrapperspb.String("released"), nil
				case <-ctx.Done():
					return nil, status.FromContextError(ctx.Err()).Err()
				}
			})},
		},
		Streams: []grpc.StreamDesc{{
			StreamName:    "WatchCaller",
			ServerStreams: true,
			Handler: func(_ any, stream grpc.ServerStream) error {
				if err := stream.RecvMsg(new(emptypb.Empty)); err != nil {
					return err
				}
				return stream.SendMsg(wrapperspb.String(caller.ID(stream.Context())))
			},
		}},
	}
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) lines(t *testing.T) []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(b.buf.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m), line)
		out = append(out, m)
	}
	return out
}

func (b *syncBuffer) find(t *testing.T, msg, method string) map[string]any {
	for _, l := range b.lines(t) {
		if l["msg"] == msg && (method == "" || l["method"] == method) {
			return l
		}
	}
	return nil
}

type testBundle struct {
	srv      *grpcserver.Server
	svc      *testService
	reg      *prometheus.Registry
	logs     *syncBuffer
	conn     *grpc.ClientConn
	cancel   context.CancelFunc
	serveErr chan error
}

func setup(t *testing.T, shutdownTimeout time.Duration) *testBundle {
	t.Helper()
	return setupConfig(t, grpcserver.Config{Addr: "127.0.0.1:0", ShutdownTimeout: shutdownTimeout})
}

func setupConfig(t *testing.T, cfg grpcserver.Config) *testBundle {
	t.Helper()
	b := &testBundle{
		svc:      &testService{started: make(chan struct{}), release: make(chan struct{}), cutOff: make(chan struct{})},
		reg:      prometheus.NewRegistry(),
		logs:     &syncBuffer{},
		serveErr: make(chan error, 1),
	}
	logger := telemetry.NewLogger(b.logs, "test", slog.LevelDebug)
	srv, err := grpcserver.New(cfg, logger, b.reg, func(s *grpc.Server) { s.RegisterService(b.svc.desc(), b.svc) })
	require.NoError(t, err)
	b.srv = srv

	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	go func() { b.serveErr <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-b.serveErr:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return")
		}
	})

	conn, err := grpcclient.Dial(srv.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	b.conn = conn
	return b
}

func (b *testBundle) whoami(ctx context.Context) (string, error) {
	out := new(wrapperspb.StringValue)
	err := b.conn.Invoke(ctx, "/"+svcName+"/Whoami", &emptypb.Empty{}, out)
	return out.GetValue(), err
}

func TestServerReportsHealthServing(t *testing.T) {
	b := setup(t, time.Second)
	hc := healthpb.NewHealthClient(b.conn)
	for _, service := range []string{"", svcName} {
		resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
		require.NoError(t, err, service)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus(), service)
	}

	b.srv.SetServing(false)
	resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, resp.GetStatus())
}

func TestServerListsServicesByReflection(t *testing.T) {
	b := setup(t, time.Second)
	stream, err := reflectionpb.NewServerReflectionClient(b.conn).ServerReflectionInfo(t.Context())
	require.NoError(t, err)
	require.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	require.Contains(t, names, svcName)
	require.Contains(t, names, "grpc.health.v1.Health")
	require.Contains(t, names, "grpc.reflection.v1.ServerReflection")
}

func TestServerTurnsPanicIntoInternal(t *testing.T) {
	b := setup(t, time.Second)
	err := b.conn.Invoke(t.Context(), "/"+svcName+"/Panic", &emptypb.Empty{}, &wrapperspb.StringValue{})
	st := status.Convert(err)
	require.Equal(t, codes.Internal, st.Code())
	require.Equal(t, "internal error", st.Message())
	require.NotContains(t, err.Error(), "secret")

	line := b.logs.find(t, "panic in grpc handler", "")
	require.NotNil(t, line, "panic logged")
	require.Contains(t, line["panic"], "secret-db-password")
	require.Contains(t, line["stack"], "runtime/debug.Stack")

	// The server survived and answers the next call.
	_, err = b.whoami(t.Context())
	require.NoError(t, err)

	require.Equal(t, 1.0, testutil.ToFloat64(handledCounter(t, b.reg, "Panic", "Internal")))
}

// handledCounter finds grpc_server_handled_total for one method and code.
func handledCounter(t *testing.T, reg *prometheus.Registry, method, code string) prometheus.Collector {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "grpc_server_handled_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["grpc_method"] == method && labels["grpc_code"] == code {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x"}, func() float64 {
					return m.GetCounter().GetValue()
				})
			}
		}
	}
	t.Fatalf("no grpc_server_handled_total for %s %s", method, code)
	return nil
}

func TestServerPutsCallerIDInContext(t *testing.T) {
	b := setup(t, time.Second)

	t.Run("caller from context reaches the handler", func(t *testing.T) {
		id, err := b.whoami(caller.WithID(t.Context(), "user-42"))
		require.NoError(t, err)
		require.Equal(t, "user-42", id)
	})
	t.Run("no caller is anonymous", func(t *testing.T) {
		id, err := b.whoami(t.Context())
		require.NoError(t, err)
		require.Equal(t, caller.Anonymous, id)
	})
	t.Run("caller reaches stream handlers", func(t *testing.T) {
		ctx := caller.WithID(t.Context(), "user-7")
		stream, err := b.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/"+svcName+"/WatchCaller")
		require.NoError(t, err)
		require.NoError(t, stream.SendMsg(&emptypb.Empty{}))
		require.NoError(t, stream.CloseSend())
		out := new(wrapperspb.StringValue)
		require.NoError(t, stream.RecvMsg(out))
		require.Equal(t, "user-7", out.GetValue())
	})
	// grpc-go clients refuse to send non-printable values themselves; the
	// server-side check for those is in caller_internal_test.go.
	for name, value := range map[string]string{
		"too long": strings.Repeat("a", grpcserver.MaxCallerIDLength+1),
		"empty":    "",
	} {
		t.Run("invalid x-user-id is rejected: "+name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(t.Context(), caller.MetadataKey, value)
			_, err := b.whoami(ctx)
			require.Equal(t, codes.InvalidArgument, status.Code(err), err)
			require.Contains(t, status.Convert(err).Message(), "x-user-id")
		})
	}
	t.Run("the longest valid id is accepted", func(t *testing.T) {
		long := strings.Repeat("u", grpcserver.MaxCallerIDLength)
		id, err := b.whoami(caller.WithID(t.Context(), long))
		require.NoError(t, err)
		require.Equal(t, long, id)
	})
}

func TestServerLogsEachCallWithTraceID(t *testing.T) {
	b := setup(t, time.Second)
	ctx, span := otel.Tracer("client").Start(caller.WithID(t.Context(), "carol"), "client-op")
	_, err := b.whoami(ctx)
	span.End()
	require.NoError(t, err)

	line := b.logs.find(t, "grpc call", "/"+svcName+"/Whoami")
	require.NotNil(t, line)
	require.Equal(t, "DEBUG", line["level"])
	require.Equal(t, "OK", line["code"])
	require.Equal(t, "carol", line["caller"])
	require.Equal(t, "test", line["service"])
	require.Contains(t, line, "duration_ms")
	require.Equal(t, span.SpanContext().TraceID().String(), line["trace_id"])
}

func TestServerTracesCallsButNotHealthChecks(t *testing.T) {
	b := setup(t, time.Second)
	ctx, parent := otel.Tracer("client").Start(t.Context(), "client-op")
	_, err := b.whoami(ctx)
	require.NoError(t, err)
	_, err = healthpb.NewHealthClient(b.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	parent.End()

	// Started, not ended: the server ends its span after the response is
	// on its way, but starts it before the handler runs.
	var serverSpans []string
	for _, s := range spans.Started() {
		if s.SpanKind() == trace.SpanKindServer && s.SpanContext().TraceID() == parent.SpanContext().TraceID() {
			serverSpans = append(serverSpans, s.Name())
		}
	}
	require.Equal(t, []string{svcName + "/Whoami"}, serverSpans)
}

func TestServeDrainsInFlightCallsOnCancel(t *testing.T) {
	b := setup(t, 10*time.Second)

	watch, err := healthpb.NewHealthClient(b.conn).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	first, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, first.GetStatus())

	blockDone := make(chan error, 1)
	go func() {
		blockDone <- b.conn.Invoke(context.Background(), "/"+svcName+"/Block", &emptypb.Empty{}, &wrapperspb.StringValue{})
	}()
	<-b.svc.started

	b.cancel()

	// Health turns NOT_SERVING before the drain.
	next, err := watch.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, next.GetStatus())

	// The watch ends by itself so it does not hold up the drain.
	_, err = watch.Recv()
	require.Equal(t, codes.Unavailable, status.Code(err), err)

	// The in-flight call keeps the server draining.
	select {
	case err := <-b.serveErr:
		t.Fatalf("Serve returned while a call was in flight: %v", err)
	default:
	}

	close(b.svc.release)
	require.NoError(t, <-blockDone, "in-flight call completes")
	select {
	case err := <-b.serveErr:
		require.NoError(t, err)
		b.serveErr <- err // for cleanup
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the drain")
	}
}

func TestServeCutsOffCallsAfterShutdownTimeout(t *testing.T) {
	b := setup(t, 200*time.Millisecond)

	blockDone := make(chan error, 1)
	go func() {
		blockDone <- b.conn.Invoke(context.Background(), "/"+svcName+"/Block", &emptypb.Empty{}, &wrapperspb.StringValue{})
	}()
	<-b.svc.started

	start := time.Now()
	b.cancel()
	select {
	case err := <-b.serveErr:
		require.NoError(t, err)
		b.serveErr <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after ShutdownTimeout")
	}
	require.GreaterOrEqual(t, time.Since(start), 200*time.Millisecond)
	require.Error(t, <-blockDone, "the blocked call was cut off")
	require.NotNil(t, b.logs.find(t, "grpc server drain timed out; closing open calls", ""))
}

// A handler cut off after ShutdownTimeout may still be using the database
// or Redis: Serve returns only after it has returned, because the binary
// closes those as soon as Serve returns.
func TestServeReturnsOnlyAfterCutOffHandlersReturn(t *testing.T) {
	b := setup(t, 200*time.Millisecond)

	callDone := make(chan error, 1)
	go func() {
		callDone <- b.conn.Invoke(context.Background(), "/"+svcName+"/Stubborn", &emptypb.Empty{}, &wrapperspb.StringValue{})
	}()
	<-b.svc.started
	b.cancel()
	<-b.svc.cutOff // the drain timed out and the call was cut off
	require.Error(t, <-callDone, "the client saw the call end")

	select {
	case err := <-b.serveErr:
		t.Fatalf("Serve returned while a handler was still running: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(b.svc.release)
	select {
	case err := <-b.serveErr:
		require.NoError(t, err)
		require.True(t, b.svc.finished.Load(), "the handler returned before Serve did")
		b.serveErr <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the handler did")
	}
}

// During DrainDelay the server reports NOT_SERVING but still serves, so that
// calls routed before the load balancer noticed still succeed.
func TestServeKeepsServingDuringDrainDelay(t *testing.T) {
	const delay = 500 * time.Millisecond
	b := setupConfig(t, grpcserver.Config{Addr: "127.0.0.1:0", DrainDelay: delay, ShutdownTimeout: time.Second})
	hc := healthpb.NewHealthClient(b.conn)
	_, err := b.whoami(t.Context())
	require.NoError(t, err)

	start := time.Now()
	b.cancel()
	require.Eventually(t, func() bool {
		resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	}, 2*time.Second, 5*time.Millisecond, "NOT_SERVING at once")
	_, err = b.whoami(t.Context())
	require.NoError(t, err, "a call arriving during the drain delay is served")
	require.Less(t, time.Since(start), delay, "the call was made within the delay")

	select {
	case err := <-b.serveErr:
		require.NoError(t, err)
		b.serveErr <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return")
	}
	require.GreaterOrEqual(t, time.Since(start), delay, "Serve waited for the drain delay")
	_, err = b.whoami(t.Context())
	require.Equal(t, codes.Unavailable, status.Code(err), "stopped: %v", err)
}

func TestNewRejectsNegativeDrainDelay(t *testing.T) {
	_, err := grpcserver.New(grpcserver.Config{Addr: "127.0.0.1:0", DrainDelay: -time.Second}, nil, prometheus.NewRegistry(), nil)
	require.ErrorContains(t, err, "DrainDelay")
}

func TestNewFailsOnBusyAddress(t *testing.T) {
	b := setup(t, time.Second)
	_, err := grpcserver.New(grpcserver.Config{Addr: b.srv.Addr().String()}, nil, prometheus.NewRegistry(), nil)
	require.ErrorContains(t, err, "listen on "+b.srv.Addr().String())
}

func TestTwoServersShareOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	for range 2 {
		srv, err := grpcserver.New(grpcserver.Config{Addr: "127.0.0.1:0"}, nil, reg, nil)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		require.NoError(t, srv.Serve(ctx))
	}
}
