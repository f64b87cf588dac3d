package main

import (
	"context"
	"io"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
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
	"github.com/goodgo/goodgo/platform/servicetest"
)

type service struct {
	*servicetest.Process
	pki               *authtest.PKI
	idempotencyPrefix string
	conn              *grpc.ClientConn
	client            paymentv1.PaymentServiceClient
	pool              *pgxpool.Pool
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
	lookup := servicetest.Lookup(vars)
	cfg, err := loadConfig(lookup)
	require.NoError(tb, err)
	s := &service{pki: pki, idempotencyPrefix: vars["IDEMPOTENCY_KEY_PREFIX"], pool: pool}
	servicetest.DeleteIdempotencyKeysAtEnd(tb, s.idempotencyPrefix)
	s.Process = servicetest.Start(tb, "payment", func(ctx context.Context, stdout io.Writer) error { return run(ctx, cfg, stdout, lookup) })
	s.conn = pki.DialAs("orchestrator", "payment", s.GRPCAddr)
	s.client = paymentv1.NewPaymentServiceClient(s.conn)
	return s
}

// customer is the user the component tests' saga calls act for.
const customer = "0190a0c4-52f7-7b8e-9d1e-4c3b2a190a0c"

// keyed returns ctx with a fresh idempotency key, acting for customer
// (calls go through the orchestrator's connection).
func keyed(ctx context.Context) context.Context {
	ctx = caller.WithDelegation(ctx, caller.Delegation{User: customer, Permissions: []string{"orders.place"}})
	return metadata.AppendToOutgoingContext(ctx, idempotency.MetadataKey, uuid.NewString())
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
	servicetest.RequireIdempotencyKeys(t, s.idempotencyPrefix)

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

	code, body := servicetest.HTTPGet(t, "http://"+s.HTTPAddr+"/metrics")
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
	code, _ = servicetest.HTTPGet(t, "http://"+s.HTTPAddr+"/readyz")
	require.Equal(t, http.StatusOK, code)

	s.Stop(t)
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
