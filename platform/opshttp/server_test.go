package opshttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/servicetest"
	"github.com/goodgo/goodgo/platform/telemetry"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// serve runs fn's server until the test ends and checks it stops cleanly.
func serve(t *testing.T, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("server did not stop")
		}
	})
}

func TestMetricsExposeRuntimeAndGRPCMetrics(t *testing.T) {
	tel, err := telemetry.Setup(t.Context(), "opshttp-test", "dev", func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })

	pki := authtest.New(t)
	cfg := grpcserver.Config{Addr: "127.0.0.1:0"}
	cfg.Authorizer, cfg.Credentials = pki.Authorizer("order", nil)
	gs, err := grpcserver.New(cfg, nil, tel.Registry, func(grpc.ServiceRegistrar) {})
	require.NoError(t, err)
	serve(t, gs.Serve)
	ops, err := opshttp.New("127.0.0.1:0", tel.Registry, nil, nil)
	require.NoError(t, err)
	serve(t, ops.Serve)

	_, err = healthpb.NewHealthClient(pki.Dial(gs.Addr().String())).Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)

	code, body := get(t, "http://"+ops.Addr().String()+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "go_goroutines ")
	require.Contains(t, body, "process_start_time_seconds ")
	require.Contains(t, body,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Check",grpc_service="grpc.health.v1.Health",grpc_type="unary"} 1`)
	require.Contains(t, body, "grpc_server_handling_seconds_bucket")
}

func TestHealthzAndReadyz(t *testing.T) {
	tel, err := telemetry.Setup(t.Context(), "opshttp-test", "dev", func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })

	var broken, bounded atomic.Bool
	broken.Store(true)
	ready := func(ctx context.Context) error {
		_, hasDeadline := ctx.Deadline()
		bounded.Store(hasDeadline)
		if broken.Load() {
			return errors.New("postgres: failed to connect to `user=orders database=orders_prod`: 10.1.2.3:5432: connection refused")
		}
		return nil
	}
	ops, err := opshttp.New("127.0.0.1:0", tel.Registry, ready, nil)
	require.NoError(t, err)
	serve(t, ops.Serve)
	base := "http://" + ops.Addr().String()

	code, body := get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)

	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready\n", body, "an unnamed error is not shown: it names hosts, users and databases")
	require.True(t, bounded.Load(), "the check gets a context with a deadline")

	broken.Store(false)
	code, body = get(t, base+"/readyz")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)

	code, _ = get(t, base+"/nope")
	require.Equal(t, http.StatusNotFound, code)
}

func TestServeStopsOnCancel(t *testing.T) {
	tel, err := telemetry.Setup(t.Context(), "opshttp-test", "dev", func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	ops, err := opshttp.New("127.0.0.1:0", tel.Registry, nil, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- ops.Serve(ctx) }()
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + ops.Addr().String() + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	resp, err := http.Get("http://" + ops.Addr().String() + "/healthz")
	if err == nil {
		resp.Body.Close()
	}
	require.Error(t, err, "listener closed")
}

func TestReadyzNamesTheFailingCheckOnly(t *testing.T) {
	tel, err := telemetry.Setup(t.Context(), "opshttp-test", "dev", func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	var logs servicetest.Logs
	logger := slog.New(slog.NewJSONHandler(&logs, nil))

	var redisDown atomic.Bool
	redisDown.Store(true)
	var pgCalls atomic.Int64
	ready := opshttp.Checks(
		opshttp.Check{Name: "postgres", Fn: func(context.Context) error { pgCalls.Add(1); return nil }},
		opshttp.Check{Name: "redis", Fn: func(context.Context) error {
			if redisDown.Load() {
				return errors.New("dial tcp redis-prod.internal:6379: connect: connection refused")
			}
			return nil
		}},
	)
	ops, err := opshttp.New("127.0.0.1:0", tel.Registry, ready, logger)
	require.NoError(t, err)
	serve(t, ops.Serve)
	readyz := "http://" + ops.Addr().String() + "/readyz"

	for range 3 {
		code, body := get(t, readyz)
		require.Equal(t, http.StatusServiceUnavailable, code)
		require.Equal(t, "not ready: redis (connection refused)\n", body, "the reason in fixed words, not the error's text")
	}
	require.Equal(t, int64(3), pgCalls.Load(), "every check runs")
	require.Equal(t, 1, strings.Count(logs.String(), `"msg":"not ready"`), "logged once per change: %s", logs.String())
	require.Contains(t, logs.String(), "redis: dial tcp redis-prod.internal:6379", "the log has the detail")

	redisDown.Store(false)
	code, body := get(t, readyz)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	require.Contains(t, logs.String(), `"msg":"ready again"`)
}

func TestChecks(t *testing.T) {
	errDown := errors.New("down")
	ready := opshttp.Checks(opshttp.Check{Name: "nil fn"}, opshttp.Check{Name: "kafka", Fn: func(context.Context) error { return errDown }})
	err := ready(t.Context())
	var checkErr *opshttp.CheckError
	require.ErrorAs(t, err, &checkErr)
	require.Equal(t, "kafka", checkErr.Name)
	require.ErrorIs(t, err, errDown)
	require.EqualError(t, err, "kafka: down")
	require.NoError(t, opshttp.Checks()(t.Context()), "no checks: ready")
}

// TestReadyzListsEveryFailedCheckWithItsReason fails two checks of three,
// with real network errors: the body names both, in the order declared,
// each with a reason that names no host; a failed optional check keeps
// the binary ready and is listed as degraded.
func TestReadyzListsEveryFailedCheckWithItsReason(t *testing.T) {
	tel, err := telemetry.Setup(t.Context(), "opshttp-test", "dev", func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	var logs servicetest.Logs
	logger := slog.New(slog.NewJSONHandler(&logs, nil))

	// A port nobody listens on: connections are refused.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := lis.Addr().String()
	require.NoError(t, lis.Close())
	dial := func(ctx context.Context) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", closed)
		if err == nil {
			_ = c.Close()
		}
		return err
	}
	var peerDown atomic.Bool
	peerDown.Store(true)
	ready := opshttp.Checks(
		opshttp.Check{Name: "kafka", Fn: func(ctx context.Context) error {
			return fmt.Errorf("kafka unreachable: %w", dial(ctx))
		}},
		opshttp.Check{Name: "postgres", Fn: func(ctx context.Context) error {
			<-ctx.Done() // hangs until the probe's deadline
			return ctx.Err()
		}},
		opshttp.Check{Name: "payment", Optional: true, Fn: func(context.Context) error {
			if peerDown.Load() {
				return opshttp.WithReason("not serving", errors.New("payment at 10.0.0.7:50052 answered NOT_SERVING"))
			}
			return nil
		}},
	)
	ops, err := opshttp.New("127.0.0.1:0", tel.Registry, ready, logger)
	require.NoError(t, err)
	serve(t, ops.Serve)
	readyz := "http://" + ops.Addr().String() + "/readyz"

	start := time.Now()
	code, body := get(t, readyz)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: kafka (connection refused), postgres (timeout)\ndegraded: payment (not serving)\n", body)
	require.Less(t, time.Since(start), 4*time.Second, "the checks run at once: one hung check bounds the probe")
	require.NotContains(t, body, "127.0.0.1")
	require.Contains(t, logs.String(), closed, "the log has the detail")

	// With the required dependencies up, the optional one's failure keeps
	// the binary ready.
	ops2, err := opshttp.New("127.0.0.1:0", tel.Registry, opshttp.Checks(
		opshttp.Check{Name: "postgres", Fn: func(context.Context) error { return nil }},
		opshttp.Check{Name: "payment", Optional: true, Fn: func(context.Context) error {
			if peerDown.Load() {
				return opshttp.WithReason("not serving", errors.New("NOT_SERVING"))
			}
			return nil
		}},
	), logger)
	require.NoError(t, err)
	serve(t, ops2.Serve)
	readyz2 := "http://" + ops2.Addr().String() + "/readyz"
	code, body = get(t, readyz2)
	require.Equal(t, http.StatusOK, code, "an optional dependency does not make the binary unready")
	require.Equal(t, "ok\ndegraded: payment (not serving)\n", body)
	require.Contains(t, logs.String(), `"msg":"degraded"`)
	peerDown.Store(false)
	code, body = get(t, readyz2)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ok\n", body)
	require.Contains(t, logs.String(), `"msg":"no longer degraded"`)
}

func TestReasonNamesNoHost(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("ping: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}), "connection refused"},
		{&net.DNSError{Err: "no such host", Name: "kafka-0.internal", IsNotFound: true}, "host not found"},
		{fmt.Errorf("read: %w", io.EOF), "connection closed"},
		{errors.New("dial tcp 10.1.2.3:6379: connect: connection refused"), "connection refused"},
		{opshttp.WithReason("schema not migrated", errors.New("relation sagas does not exist")), "schema not migrated"},
		{fmt.Errorf("kafka: %w", ownReason("missing topic goodgo.order.events")), "missing topic goodgo.order.events"},
		{errors.New("password authentication failed for user goodgo"), "failed"},
	} {
		require.Equal(t, tc.want, opshttp.Reason(tc.err), "%v", tc.err)
	}
}

// ownReason is an error that gives its own reason, as kafkaconn's missing
// topics do.
type ownReason string

func (r ownReason) Error() string           { return "not usable: " + string(r) }
func (r ownReason) ReadinessReason() string { return string(r) }

// TestGRPCHealthChecksANeighbour passes while the neighbour's health
// service says SERVING (or it has none), and says why it fails otherwise.
func TestGRPCHealthChecksANeighbour(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := health.NewServer()
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	check := opshttp.GRPCHealth(conn)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	require.NoError(t, check(ctx))
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	err = check(ctx)
	require.Error(t, err)
	require.Equal(t, "not serving", opshttp.Reason(err))

	bare, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	noHealth := grpc.NewServer()
	go func() { _ = noHealth.Serve(bare) }()
	t.Cleanup(noHealth.Stop)
	c2, err := grpc.NewClient(bare.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c2.Close() })
	require.NoError(t, opshttp.GRPCHealth(c2)(ctx), "a service without a health service answered")

	s.Stop()
	// The first call may see the connection close; the next ones find the
	// port closed.
	require.Eventually(t, func() bool {
		err := check(ctx)
		return err != nil && opshttp.Reason(err) == "connection refused"
	}, 10*time.Second, 10*time.Millisecond)
}

// Profiles are served only when asked for: the port is unauthenticated.
func TestProfilesOnlyWhenEnabled(t *testing.T) {
	plain, err := opshttp.New("127.0.0.1:0", prometheus.NewRegistry(), nil, nil)
	require.NoError(t, err)
	serve(t, plain.Serve)
	code, _ := get(t, "http://"+plain.Addr().String()+"/debug/pprof/")
	require.Equal(t, http.StatusNotFound, code)

	profiled, err := opshttp.New("127.0.0.1:0", prometheus.NewRegistry(), nil, nil)
	require.NoError(t, err)
	profiled.ServeProfiles()
	serve(t, profiled.Serve)
	code, body := get(t, "http://"+profiled.Addr().String()+"/debug/pprof/")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "goroutine")
	code, body = get(t, "http://"+profiled.Addr().String()+"/debug/pprof/block?debug=1")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "--- contention:")
}
