// Package grpcserver builds the gRPC server every GoodGo service runs: one
// place for TLS, authentication and authorization (platform/authz),
// OpenTelemetry tracing, Prometheus metrics, panic recovery, call logging,
// limits on messages, streams and keepalives, the health service,
// reflection (development mode only) and the graceful shutdown, so that
// services register their handlers and nothing else.
package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/telemetry"
)

// DefaultShutdownTimeout is used when Config.ShutdownTimeout is zero.
const DefaultShutdownTimeout = 10 * time.Second

// Config is the server's address and shutdown timing.
type Config struct {
	// Addr is the listen address, "host:port"; ":0" picks a free port.
	Addr string
	// DrainDelay is how long the server keeps accepting calls after the
	// context of Serve is cancelled, reporting NOT_SERVING, before it stops
	// accepting: load balancers and Kubernetes (whose endpoint removal
	// races the SIGTERM) need a few seconds to stop routing new calls here,
	// and calls they send meanwhile would otherwise fail. Zero (the default)
	// stops at once, right for tests; on Kubernetes use about 5 s, and keep
	// terminationGracePeriodSeconds above DrainDelay + ShutdownTimeout.
	DrainDelay time.Duration
	// ShutdownTimeout bounds how long in-flight calls may drain, after
	// DrainDelay, before they are cut off (their contexts cancelled).
	ShutdownTimeout time.Duration

	// Credentials secure the transport (mtls.Source.ServerCredentials):
	// required, there is no plaintext mode.
	Credentials credentials.TransportCredentials
	// Authorizer authenticates callers and applies each RPC's policy:
	// required, and every registered method must have a policy.
	Authorizer *authz.Authorizer
	// Reflection registers the reflection service, for grpcurl and other
	// tools: development mode only, it tells an attacker every method.
	Reflection bool
	// MaxRecvMsgSize bounds a request message (default 1 MiB).
	MaxRecvMsgSize int
	// MaxConcurrentStreams bounds the calls in flight on one connection
	// (default 256).
	MaxConcurrentStreams uint32
}

// Defaults of the transport limits.
const (
	DefaultMaxRecvMsgSize       = 1 << 20
	DefaultMaxConcurrentStreams = 256
	// MaxSendMsgSize bounds a response message.
	MaxSendMsgSize = 4 << 20
	// MaxHeaderListSize bounds a call's metadata: tokens and assertions
	// are about 2 KiB.
	MaxHeaderListSize = 32 << 10
	// StreamWorkers is how many goroutines serve calls and keep their
	// stacks between calls. A goroutine per call starts with a small stack
	// and copies it as the interceptors, TLS and the database client
	// deepen it: 2-4 % of each service's CPU in the order saga
	// (runtime.newstack, docs/benchmarks.md). Calls beyond this many in
	// flight get a goroutine of their own, as without workers.
	StreamWorkers = 64
)

// Keepalive enforcement: a client may ping at most every KeepaliveMinTime
// (grpcclient pings every 30 s), also without calls in flight; the server
// pings an idle connection every 30 s and drops it after 10 s without an
// answer; connections are recycled after 30 min so that clients spread
// over new replicas, with 30 s for their calls to finish.
var (
	KeepaliveMinTime = 10 * time.Second
	keepaliveParams  = keepalive.ServerParameters{
		MaxConnectionIdle:     15 * time.Minute,
		MaxConnectionAge:      30 * time.Minute,
		MaxConnectionAgeGrace: 30 * time.Second,
		Time:                  30 * time.Second,
		Timeout:               10 * time.Second,
	}
)

type options struct {
	unary []grpc.UnaryServerInterceptor
}

// Option customises New.
type Option func(*options)

// WithUnaryInterceptors appends interceptors after the built-in ones, so they
// run inside recovery and see the caller identity (e.g. idempotency).
func WithUnaryInterceptors(i ...grpc.UnaryServerInterceptor) Option {
	return func(o *options) { o.unary = append(o.unary, i...) }
}

// Server is a gRPC server bound to its address, with health and reflection.
type Server struct {
	cfg    Config
	logger *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	lis    net.Listener

	stopping chan struct{} // closed when shutdown starts; ends health watches

	mu       sync.Mutex
	services []string // registered service names, for per-service health
	served   bool
}

// New builds a server, lets register add the service implementations, and
// binds cfg.Addr so that Addr is known before Serve. Metrics are registered
// on reg; registering a second server on the same registry shares its
// metrics. A nil logger discards logs.
//
// Every call passes, outermost first: the OpenTelemetry stats handler
// (health checks and reflection are not traced), the Prometheus metrics,
// authentication (the verified caller identity), the call log, panic
// recovery, authorization and rate limits, then the interceptors given by
// options. New fails when a registered method has no authorization policy.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer, register func(grpc.ServiceRegistrar), opts ...Option) (*Server, error) {
	logger = logs.OrDiscard(logger)
	if reg == nil {
		return nil, errors.New("grpcserver: nil prometheus.Registerer")
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.DrainDelay < 0 {
		return nil, fmt.Errorf("grpcserver: negative DrainDelay %v", cfg.DrainDelay)
	}
	if cfg.Credentials == nil || cfg.Authorizer == nil {
		return nil, errors.New("grpcserver: Credentials and Authorizer are required")
	}
	if cfg.MaxRecvMsgSize <= 0 {
		cfg.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	var o options
	for _, opt := range opts {
		opt(&o)
	}

	metrics, err := registerMetrics(reg)
	if err != nil {
		return nil, err
	}
	exemplar := grpcprom.WithExemplarFromContext(exemplarFromContext)

	az := cfg.Authorizer
	callLog, recovered := slogLogger(logger), recoveryOption(logger)
	unary := append([]grpc.UnaryServerInterceptor{
		metrics.UnaryServerInterceptor(exemplar),
		az.UnaryAuthenticate(),
		logging.UnaryServerInterceptor(callLog, loggingOptions()...),
		recovery.UnaryServerInterceptor(recovered),
		az.UnaryAuthorize(),
	}, o.unary...)
	stream := []grpc.StreamServerInterceptor{
		metrics.StreamServerInterceptor(exemplar),
		az.StreamAuthenticate(),
		logging.StreamServerInterceptor(callLog, loggingOptions()...),
		recovery.StreamServerInterceptor(recovered),
		az.StreamAuthorize(),
	}

	codec := newDecodeCodec()
	gs := grpc.NewServer(
		grpc.Creds(cfg.Credentials),
		grpc.ForceServerCodecV2(codec),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(MaxSendMsgSize),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		grpc.MaxHeaderListSize(MaxHeaderListSize),
		grpc.NumStreamWorkers(StreamWorkers),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepaliveParams),
		// Stop (and so Serve) returns only after every handler has returned,
		// also those cut off after ShutdownTimeout: the caller closes the
		// pools and clients the handlers use once Serve returns.
		grpc.WaitForHandlers(true),
		// Probes and reflection would otherwise fill the trace store.
		grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithFilter(
			filters.None(filters.HealthCheck(), filters.ServicePrefix("grpc.reflection."))))),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
	)

	hs := health.NewServer()
	stopping := make(chan struct{})
	healthpb.RegisterHealthServer(gs, healthServer{Server: hs, stopping: stopping})
	if cfg.Reflection {
		reflection.Register(gs)
	}
	if register != nil {
		register(decodeRegistrar{server: gs, codec: codec})
	}
	if err := az.Check(gs.GetServiceInfo()); err != nil {
		return nil, fmt.Errorf("grpcserver: %w", err)
	}
	metrics.InitializeMetrics(gs)

	s := &Server{cfg: cfg, logger: logger, grpc: gs, health: hs, stopping: stopping}
	for name := range gs.GetServiceInfo() {
		s.services = append(s.services, name)
	}
	s.SetServing(true)

	// Binding is immediate and local: there is nothing a context could cancel.
	lis, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("grpcserver: listen on %s: %w", cfg.Addr, err)
	}
	s.lis = lis
	return s, nil
}

// registerMetrics registers the gRPC server metrics on reg, reusing the
// metrics already there when another server registered them first.
func registerMetrics(reg prometheus.Registerer) (*grpcprom.ServerMetrics, error) {
	return telemetry.Register(reg, "grpcserver", grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram()))
}

// exemplarFromContext links the latency histogram to the trace of the call.
func exemplarFromContext(ctx context.Context) prometheus.Labels {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		return prometheus.Labels{"trace_id": sc.TraceID().String()}
	}
	return nil
}

// Addr is the bound listen address (with the real port when cfg.Addr
// asked for port 0).
func (s *Server) Addr() net.Addr {
	return s.lis.Addr()
}

// SetServing sets the health status reported for the whole server (service
// "") and for every registered service: SERVING or NOT_SERVING. A server is
// SERVING from New on; once Serve starts shutting down it stays NOT_SERVING.
// Safe for concurrent use.
func (s *Server) SetServing(serving bool) {
	status := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		status = healthpb.HealthCheckResponse_SERVING
	}
	s.health.SetServingStatus("", status)
	for _, name := range s.services {
		if name != healthpb.Health_ServiceDesc.ServiceName {
			s.health.SetServingStatus(name, status)
		}
	}
}

// Serve serves on the bound address until ctx is cancelled, then shuts down:
// health turns NOT_SERVING and calls are still accepted for DrainDelay; then
// new calls are refused, in-flight calls drain for up to ShutdownTimeout and
// are then cut off (their contexts are cancelled). Serve returns only once
// every handler has returned, so that the caller may then close what the
// handlers use; a handler that ignores its cancelled context holds Serve
// up. It returns nil after a shutdown caused by ctx, or the error that
// stopped serving. Serve may be called once.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return errors.New("grpcserver: Serve called twice")
	}
	s.served = true
	s.mu.Unlock()

	s.logger.InfoContext(ctx, "grpc server listening", "addr", s.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(s.lis) }()

	select {
	case err := <-errc:
		s.health.Shutdown()
		return fmt.Errorf("grpcserver: serve: %w", err)
	case <-ctx.Done():
	}

	// Load balancers and probes see NOT_SERVING first and get DrainDelay to
	// stop routing here; GracefulStop then refuses new calls and waits for
	// in-flight ones and open streams up to the bound. Health watches end
	// by themselves.
	s.health.Shutdown()
	close(s.stopping)
	s.logger.Info("grpc server shutting down",
		"drain_delay", s.cfg.DrainDelay.String(), "timeout", s.cfg.ShutdownTimeout.String())
	var serveErr error
	serveDone := false
	if s.cfg.DrainDelay > 0 {
		delay := time.NewTimer(s.cfg.DrainDelay)
		select {
		case <-delay.C:
		case serveErr = <-errc: // the listener failed meanwhile; in-flight calls still drain
			serveDone = true
			delay.Stop()
		}
	}
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	timer := time.NewTimer(s.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		s.logger.Warn("grpc server drain timed out; closing open calls", "timeout", s.cfg.ShutdownTimeout.String())
		s.grpc.Stop()
		<-stopped
	}
	// grpc.Server.Serve returns nil once stopped, or ErrServerStopped when
	// ctx was cancelled before it started.
	if !serveDone {
		serveErr = <-errc
	}
	if serveErr != nil && !errors.Is(serveErr, grpc.ErrServerStopped) {
		return fmt.Errorf("grpcserver: serve: %w", serveErr)
	}
	s.logger.Info("grpc server stopped")
	return nil
}
