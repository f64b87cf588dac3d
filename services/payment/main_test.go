package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/goodgo/goodgo/db"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/pgtest"
)

// logBuffer collects the service's JSON log lines; run writes from several
// goroutines while the test reads.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// maxLogBytes caps what logBuffer keeps, so that benchmarks logging every
// call do not grow it without bound; the start-up lines come first.
const maxLogBytes = 4 << 20

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > maxLogBytes {
		return len(p), nil
	}
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// find returns the first log line with msg, or nil.
func (l *logBuffer) find(msg string) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			return line
		}
	}
	return nil
}

type service struct {
	pki                *authtest.PKI
	grpcAddr, httpAddr string
	idempotencyPrefix  string
	conn               *grpc.ClientConn
	client             paymentv1.PaymentServiceClient
	cancel             context.CancelFunc
	done               chan error
	logs               *logBuffer
	pool               *pgxpool.Pool
}

// startService runs the binary's run() on free ports against a fresh pgtest
// database and the local Redis, with env added to the test defaults, and
// waits until it serves.
func startService(tb testing.TB, env map[string]string) *service {
	tb.Helper()
	dbURL, pool := pgtest.NewDatabase(tb, db.Payment)
	pki := authtest.New(tb)
	vars := pki.Env("payment")
	maps.Copy(vars, map[string]string{
		"DATABASE_URL":           pgtest.AsRole(dbURL, "goodgo_payment"), // its own role; the owner (here the superuser) migrates
		"MIGRATE_DATABASE_URL":   dbURL,
		"GRPC_ADDR":              "127.0.0.1:0",
		"HTTP_ADDR":              "127.0.0.1:0",
		"IDEMPOTENCY_KEY_PREFIX": "payment-main-test:" + uuid.NewString() + ":",
		"OTEL_SDK_DISABLED":      "true",
		"SHUTDOWN_TIMEOUT":       "5s",
		"STARTUP_TIMEOUT":        "10s",
	})
	maps.Copy(vars, env)
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	cfg, err := loadConfig(lookup)
	require.NoError(tb, err)

	ctx, cancel := context.WithCancel(context.Background())
	s := &service{pki: pki, idempotencyPrefix: vars["IDEMPOTENCY_KEY_PREFIX"], cancel: cancel, done: make(chan error, 1), logs: &logBuffer{}, pool: pool}
	go func() { s.done <- run(ctx, cfg, s.logs, lookup) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-s.done:
			if err != nil {
				tb.Errorf("run: %v", err)
			}
		case <-time.After(15 * time.Second):
			tb.Error("run did not return after cancel")
		}
	})

	var started map[string]any
	require.Eventually(tb, func() bool {
		select {
		case err := <-s.done:
			s.done <- err
			return true
		default:
		}
		started = s.logs.find("payment started")
		return started != nil
	}, 20*time.Second, 10*time.Millisecond)
	require.NotNil(tb, started, "run ended early: logs:\n%s", s.logs.String())
	s.grpcAddr, s.httpAddr = started["grpc_addr"].(string), started["http_addr"].(string)

	s.conn = pki.DialAs("orchestrator", "payment", s.grpcAddr)
	s.client = paymentv1.NewPaymentServiceClient(s.conn)
	return s
}

// requireIdempotencyKeys asserts that the guard stored its keys in the local
// Redis under prefix (IDEMPOTENCY_KEY_PREFIX), and removes them.
func requireIdempotencyKeys(t *testing.T, prefix string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer func() { _ = rdb.Close() }()
	keys, err := rdb.Keys(context.Background(), prefix+"*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, keys, "no idempotency key under %q", prefix)
	require.NoError(t, rdb.Del(context.Background(), keys...).Err())
}

// customer is the user the component tests' saga calls act for.
const customer = "0190a0c4-52f7-7b8e-9d1e-4c3b2a190a0c"

// keyed returns ctx with a fresh idempotency key, acting for customer
// (calls go through the orchestrator's connection).
func keyed(ctx context.Context) context.Context {
	ctx = caller.WithDelegation(ctx, caller.Delegation{User: customer, Permissions: []string{"orders.place"}})
	return metadata.AppendToOutgoingContext(ctx, idempotency.MetadataKey, uuid.NewString())
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func TestRunServesPaymentsAndStopsOnCancel(t *testing.T) {
	t.Parallel()
	s := startService(t, map[string]string{"PAYMENT_DECLINE_ABOVE_MINOR": "5000"})
	ctx := context.Background()
	usd := func(minor int64) *commonv1.Money { return &commonv1.Money{CurrencyCode: "USD", AmountMinor: minor} }

	processed, err := s.client.ProcessPayment(keyed(ctx), &paymentv1.ProcessPaymentRequest{
		OrderId: uuid.NewString(), Amount: usd(4999), PaymentMethod: "tok_visa"})
	require.NoError(t, err)
	require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED, processed.GetPayment().GetStatus())

	declined, err := s.client.ProcessPayment(keyed(ctx), &paymentv1.ProcessPaymentRequest{
		OrderId: uuid.NewString(), Amount: usd(100), PaymentMethod: "tok_decline"})
	require.NoError(t, err)
	require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_DECLINED, declined.GetPayment().GetStatus())
	require.Equal(t, "card_declined", declined.GetPayment().GetDeclineReason())

	overLimit, err := s.client.ProcessPayment(keyed(ctx), &paymentv1.ProcessPaymentRequest{
		OrderId: uuid.NewString(), Amount: usd(5001), PaymentMethod: "tok_visa"})
	require.NoError(t, err)
	require.Equal(t, "amount_limit", overLimit.GetPayment().GetDeclineReason(), "PAYMENT_DECLINE_ABOVE_MINOR is applied")

	refunded, err := s.client.RefundPayment(keyed(ctx), &paymentv1.RefundPaymentRequest{OrderId: processed.GetPayment().GetOrderId()})
	require.NoError(t, err)
	require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED, refunded.GetPayment().GetStatus())
	require.EqualValues(t, 4999, refunded.GetPayment().GetRefunded().GetAmountMinor())
	requireIdempotencyKeys(t, s.idempotencyPrefix)

	got, err := s.client.GetPayment(ctx, &paymentv1.GetPaymentRequest{PaymentId: processed.GetPayment().GetPaymentId()})
	require.NoError(t, err)
	require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED, got.GetPayment().GetStatus())
	require.Equal(t, refunded.GetPayment().GetVersionToken(), got.GetPayment().GetVersionToken())

	health, err := healthpb.NewHealthClient(s.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, health.GetStatus())
	health, err = healthpb.NewHealthClient(s.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: paymentv1.PaymentService_ServiceDesc.ServiceName})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, health.GetStatus())

	code, body := httpGet(t, "http://"+s.httpAddr+"/metrics")
	require.Equal(t, http.StatusOK, code)
	for _, name := range []string{
		`idempotency_checks_total{method="/goodgo.payment.v1.PaymentService/ProcessPayment"} 3`,
		`idempotency_key_ttl_seconds 86400`,
		`optimistic_lock_attempts_total{aggregate="payment"} 1`,
		`outbox_events_total{event_type="payment.refunded.v1",topic="goodgo.payment.events"} 1`,
		`grpc_server_handled_total`,
	} {
		require.Contains(t, body, name)
	}
	code, _ = httpGet(t, "http://"+s.httpAddr+"/readyz")
	require.Equal(t, http.StatusOK, code)

	s.cancel()
	select {
	case err := <-s.done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return within 5s of cancel")
	}
	s.done <- nil // for the cleanup
	require.NotNil(t, s.logs.find("payment stopped"))
}

func TestRunFailsFastOnUnreachableRedis(t *testing.T) {
	t.Parallel()
	dbURL, _ := pgtest.NewDatabase(t, db.Payment)
	vars := authtest.New(t).Env("payment")
	maps.Copy(vars, map[string]string{
		// Migrated already (pgtest's template): production mode without
		// MIGRATE_DATABASE_URL only checks the schema version.
		"DATABASE_URL": pgtest.AsRole(dbURL, "goodgo_payment"), "REDIS_URL": "redis://127.0.0.1:1/0", "STARTUP_TIMEOUT": "300ms",
		"GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0", "OTEL_SDK_DISABLED": "true",
	})
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	cfg, err := loadConfig(lookup)
	require.NoError(t, err)
	start := time.Now()
	err = run(context.Background(), cfg, io.Discard, lookup)
	require.Error(t, err)
	require.Contains(t, strings.ToLower(err.Error()), "redis")
	require.Less(t, time.Since(start), 10*time.Second)
}
