package grpcserver_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
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

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/servicetest"
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
// generated code: Whoami returns the caller, Echo its string argument,
// Panic panics, Block waits until released or cancelled, WatchCaller
// streams the caller once.
type testService struct {
	started chan struct{}
	release chan struct{}
	// Stubborn: cutOff is closed when its context ends; it returns only
	// after release, setting finished first.
	cutOff   chan struct{}
	finished atomic.Bool
}

const svcName = "goodgo.test.v1.TestService"

// policies are the test service's: every method for signed-in users, and
// Whoami for the orchestrator too.
var policies = authz.Policies{
	"/" + svcName + "/Whoami":      {Users: true, Services: []string{"orchestrator"}},
	"/" + svcName + "/Echo":        {Users: true},
	"/" + svcName + "/Panic":       {Users: true},
	"/" + svcName + "/Stubborn":    {Users: true},
	"/" + svcName + "/Block":       {Users: true},
	"/" + svcName + "/WatchCaller": {Users: true},
}

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
				return wrapperspb.String(caller.From(ctx).String()), nil
			})},
			{MethodName: "Echo", Handler: func(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
				in := new(wrapperspb.StringValue)
				if err := dec(in); err != nil {
					return nil, err
				}
				return interceptor(ctx, in, &grpc.UnaryServerInfo{FullMethod: "/" + svcName + "/Echo"},
					func(_ context.Context, req any) (any, error) { return req, nil })
			}},
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
				return stream.SendMsg(wrapperspb.String(caller.From(stream.Context()).String()))
			},
		}},
	}
}

// findLog returns the first log line with message msg (and method, when
// not empty), or nil.
func findLog(logs *servicetest.Logs, msg, method string) map[string]any {
	for _, l := range logs.All(msg) {
		if method == "" || l["method"] == method {
			return l
		}
	}
	return nil
}

type testBundle struct {
	pki      *authtest.PKI
	token    string // carol's
	srv      *grpcserver.Server
	svc      *testService
	reg      *prometheus.Registry
	logs     *servicetest.Logs
	conn     *grpc.ClientConn
	cancel   context.CancelFunc
	serveErr chan error
}

func setup(t *testing.T, shutdownTimeout time.Duration) *testBundle {
	t.Helper()
	return setupConfig(t, grpcserver.Config{Addr: "127.0.0.1:0", ShutdownTimeout: shutdownTimeout})
}

// secure fills in the credentials and the authorizer of the test service,
// run as the order service, from pki.
func secure(pki *authtest.PKI, cfg grpcserver.Config) grpcserver.Config {
	cfg.Authorizer, cfg.Credentials = pki.Authorizer("order", policies)
	return cfg
}

// setupConfig serves the test service with cfg (credentials and
// authorizer filled in) and connects to it as a user's client; calls made
// with b.ctx carry carol's token.
func setupConfig(t *testing.T, cfg grpcserver.Config) *testBundle {
	t.Helper()
	b := &testBundle{
		pki:      authtest.New(t),
		svc:      &testService{started: make(chan struct{}), release: make(chan struct{}), cutOff: make(chan struct{})},
		reg:      prometheus.NewRegistry(),
		logs:     &servicetest.Logs{},
		serveErr: make(chan error, 1),
	}
	b.token = b.pki.Token("carol")
	logger := logs.NewLogger(b.logs, "test", slog.LevelDebug)
	srv, err := grpcserver.New(secure(b.pki, cfg), logger, b.reg, func(s grpc.ServiceRegistrar) { s.RegisterService(b.svc.desc(), b.svc) })
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

	b.conn = b.pki.Dial(srv.Addr().String())
	return b
}

// ctx carries carol's token.
func (b *testBundle) ctx(ctx context.Context) context.Context {
	return authtest.AsUser(ctx, b.token)
}

// whoami calls Whoami with ctx as it is (add credentials to it).
func (b *testBundle) whoami(ctx context.Context) (string, error) {
	return b.whoamiOn(ctx, b.conn)
}

func (b *testBundle) whoamiOn(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	out := new(wrapperspb.StringValue)
	err := conn.Invoke(ctx, "/"+svcName+"/Whoami", &emptypb.Empty{}, out)
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

func TestServerListsServicesByReflectionInDevelopmentOnly(t *testing.T) {
	list := func(t *testing.T, b *testBundle) ([]string, error) {
		stream, err := reflectionpb.NewServerReflectionClient(b.conn).ServerReflectionInfo(t.Context())
		require.NoError(t, err)
		// Without reflection the server may end the stream before the
		// request is sent: Send then returns io.EOF and Recv the status.
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{
			MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
		}); err != nil {
			require.ErrorIs(t, err, io.EOF)
		}
		resp, err := stream.Recv()
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		return names, err
	}
	t.Run("development", func(t *testing.T) {
		names, err := list(t, setupConfig(t, grpcserver.Config{Addr: "127.0.0.1:0", Reflection: true}))
		require.NoError(t, err)
		require.Contains(t, names, svcName)
		require.Contains(t, names, "grpc.health.v1.Health")
		require.Contains(t, names, "grpc.reflection.v1.ServerReflection")
	})
	t.Run("production", func(t *testing.T) {
		_, err := list(t, setup(t, time.Second))
		require.Equal(t, codes.Unimplemented, status.Code(err), err)
	})
}

func TestServerTurnsPanicIntoInternal(t *testing.T) {
	b := setup(t, time.Second)
	err := b.conn.Invoke(b.ctx(t.Context()), "/"+svcName+"/Panic", &emptypb.Empty{}, &wrapperspb.StringValue{})
	st := status.Convert(err)
	require.Equal(t, codes.Internal, st.Code())
	require.Equal(t, "internal error", st.Message())
	require.NotContains(t, err.Error(), "secret")

	line := findLog(b.logs, "panic in grpc handler", "")
	require.NotNil(t, line, "panic logged")
	require.Contains(t, line["panic"], "secret-db-password")
	require.Contains(t, line["stack"], "runtime/debug.Stack")

	// The server survived and answers the next call.
	_, err = b.whoami(b.ctx(t.Context()))
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

func TestServerPutsVerifiedCallerInContext(t *testing.T) {
	b := setup(t, time.Second)

	t.Run("a user's token names the user", func(t *testing.T) {
		id, err := b.whoami(b.ctx(t.Context()))
		require.NoError(t, err)
		require.Equal(t, "carol", id)
	})
	t.Run("a service's certificate names the service", func(t *testing.T) {
		id, err := b.whoamiOn(t.Context(), b.pki.DialAs("orchestrator", "order", b.srv.Addr().String()))
		require.NoError(t, err)
		require.Equal(t, "orchestrator", id)
	})
	t.Run("a service not in the policy is refused", func(t *testing.T) {
		_, err := b.whoamiOn(t.Context(), b.pki.DialAs("payment", "order", b.srv.Addr().String()))
		require.Equal(t, codes.PermissionDenied, status.Code(err), err)
	})
	t.Run("no credentials is unauthenticated", func(t *testing.T) {
		_, err := b.whoami(t.Context())
		require.Equal(t, codes.Unauthenticated, status.Code(err), err)
		require.Contains(t, status.Convert(err).Message(), "bearer token")
	})
	t.Run("a plain x-user-id header names nobody", func(t *testing.T) {
		_, err := b.whoami(metadata.AppendToOutgoingContext(t.Context(), "x-user-id", "admin"))
		require.Equal(t, codes.Unauthenticated, status.Code(err), err)
	})
	t.Run("the caller reaches stream handlers", func(t *testing.T) {
		stream, err := b.conn.NewStream(b.ctx(t.Context()), &grpc.StreamDesc{ServerStreams: true}, "/"+svcName+"/WatchCaller")
		require.NoError(t, err)
		require.NoError(t, stream.SendMsg(&emptypb.Empty{}))
		require.NoError(t, stream.CloseSend())
		out := new(wrapperspb.StringValue)
		require.NoError(t, stream.RecvMsg(out))
		require.Equal(t, "carol", out.GetValue())
	})
	t.Run("streams refuse callers without credentials", func(t *testing.T) {
		stream, err := b.conn.NewStream(t.Context(), &grpc.StreamDesc{ServerStreams: true}, "/"+svcName+"/WatchCaller")
		require.NoError(t, err)
		require.NoError(t, stream.SendMsg(&emptypb.Empty{}))
		require.NoError(t, stream.CloseSend())
		err = stream.RecvMsg(new(wrapperspb.StringValue))
		require.Equal(t, codes.Unauthenticated, status.Code(err), err)
	})
	t.Run("health checks need no credentials", func(t *testing.T) {
		_, err := healthpb.NewHealthClient(b.conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
	})
}

func TestNewRefusesAMethodWithoutPolicy(t *testing.T) {
	pki := authtest.New(t)
	cfg := grpcserver.Config{Addr: "127.0.0.1:0"}
	cfg.Authorizer, cfg.Credentials = pki.Authorizer("order", authz.Policies{"/" + svcName + "/Whoami": {Users: true}})
	svc := &testService{}
	_, err := grpcserver.New(cfg, nil, prometheus.NewRegistry(), func(s grpc.ServiceRegistrar) { s.RegisterService(svc.desc(), svc) })
	require.ErrorContains(t, err, "no policy for /"+svcName+"/Block")
}

func TestNewRefusesToServeWithoutCredentials(t *testing.T) {
	_, err := grpcserver.New(grpcserver.Config{Addr: "127.0.0.1:0"}, nil, prometheus.NewRegistry(), nil)
	require.ErrorContains(t, err, "Credentials and Authorizer are required")
}

// rawCodec sends bytes as they are, so that a test can send what a
// grpc-go client would refuse to encode.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

func TestServerReportsUndecodableRequestsAsInvalidArgument(t *testing.T) {
	b := setup(t, time.Second)
	call := func(t *testing.T, req []byte) error {
		var resp []byte
		return b.conn.Invoke(b.ctx(t.Context()), "/"+svcName+"/Echo", &req, &resp, grpc.ForceCodec(rawCodec{}))
	}
	t.Run("invalid UTF-8 names the field", func(t *testing.T) {
		err := call(t, []byte{0x0a, 0x02, 0xff, 0xfe}) // field 1 (value), bytes ff fe
		require.Equal(t, codes.InvalidArgument, status.Code(err), err)
		require.Equal(t, "value: must be valid UTF-8", status.Convert(err).Message())
	})
	t.Run("garbage is not a valid message", func(t *testing.T) {
		err := call(t, []byte{0x0a, 0x7f})
		require.Equal(t, codes.InvalidArgument, status.Code(err), err)
		require.Contains(t, status.Convert(err).Message(), "not a valid google.protobuf.StringValue")
	})
	t.Run("valid requests still pass", func(t *testing.T) {
		out := new(wrapperspb.StringValue)
		require.NoError(t, b.conn.Invoke(b.ctx(t.Context()), "/"+svcName+"/Echo", wrapperspb.String("héllo"), out))
		require.Equal(t, "héllo", out.GetValue())
	})
	t.Run("a request over the size limit is refused", func(t *testing.T) {
		err := b.conn.Invoke(b.ctx(t.Context()), "/"+svcName+"/Echo",
			wrapperspb.String(strings.Repeat("x", grpcserver.DefaultMaxRecvMsgSize+1)), new(wrapperspb.StringValue))
		require.Equal(t, codes.ResourceExhausted, status.Code(err), err)
	})
}

func TestServerLogsEachCallWithTraceID(t *testing.T) {
	b := setup(t, time.Second)
	ctx, span := otel.Tracer("client").Start(b.ctx(t.Context()), "client-op")
	_, err := b.whoami(ctx)
	span.End()
	require.NoError(t, err)

	line := findLog(b.logs, "grpc call", "/"+svcName+"/Whoami")
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
	ctx, parent := otel.Tracer("client").Start(b.ctx(t.Context()), "client-op")
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
		blockDone <- b.conn.Invoke(b.ctx(context.Background()), "/"+svcName+"/Block", &emptypb.Empty{}, &wrapperspb.StringValue{})
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
		blockDone <- b.conn.Invoke(b.ctx(context.Background()), "/"+svcName+"/Block", &emptypb.Empty{}, &wrapperspb.StringValue{})
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
	require.NotNil(t, findLog(b.logs, "grpc server drain timed out; closing open calls", ""))
}

// A handler cut off after ShutdownTimeout may still be using the database
// or Redis: Serve returns only after it has returned, because the binary
// closes those as soon as Serve returns.
func TestServeReturnsOnlyAfterCutOffHandlersReturn(t *testing.T) {
	b := setup(t, 200*time.Millisecond)

	callDone := make(chan error, 1)
	go func() {
		callDone <- b.conn.Invoke(b.ctx(context.Background()), "/"+svcName+"/Stubborn", &emptypb.Empty{}, &wrapperspb.StringValue{})
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
	_, err := b.whoami(b.ctx(t.Context()))
	require.NoError(t, err)

	start := time.Now()
	b.cancel()
	require.Eventually(t, func() bool {
		resp, err := hc.Check(t.Context(), &healthpb.HealthCheckRequest{})
		return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	}, 2*time.Second, 5*time.Millisecond, "NOT_SERVING at once")
	_, err = b.whoami(b.ctx(t.Context()))
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
	_, err = b.whoami(b.ctx(t.Context()))
	require.Equal(t, codes.Unavailable, status.Code(err), "stopped: %v", err)
}

func TestNewRejectsNegativeDrainDelay(t *testing.T) {
	_, err := grpcserver.New(secure(authtest.New(t), grpcserver.Config{Addr: "127.0.0.1:0", DrainDelay: -time.Second}), nil, prometheus.NewRegistry(), nil)
	require.ErrorContains(t, err, "DrainDelay")
}

func TestNewFailsOnBusyAddress(t *testing.T) {
	b := setup(t, time.Second)
	_, err := grpcserver.New(secure(b.pki, grpcserver.Config{Addr: b.srv.Addr().String()}), nil, prometheus.NewRegistry(), nil)
	require.ErrorContains(t, err, "listen on "+b.srv.Addr().String())
}

func TestTwoServersShareOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	pki := authtest.New(t)
	for range 2 {
		srv, err := grpcserver.New(secure(pki, grpcserver.Config{Addr: "127.0.0.1:0"}), nil, reg, nil)
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		require.NoError(t, srv.Serve(ctx))
	}
}
