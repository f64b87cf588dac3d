package grpcapi_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/servicetest"
	"github.com/goodgo/goodgo/services/payment/internal/app"
	"github.com/goodgo/goodgo/services/payment/internal/grpcapi"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
	"github.com/goodgo/goodgo/services/payment/internal/postgres"
)

// testBundle serves the payment API; client is the orchestrator's
// connection (withKey's calls act for customer), user an end user's, and
// pki makes their credentials.
type testBundle struct {
	pool   *pgxpool.Pool
	client paymentv1.PaymentServiceClient
	user   paymentv1.PaymentServiceClient
	pki    *authtest.PKI
	addr   string
	signer *optlock.Signer
	// rdb and idemKeys reach the guard's records: idemKeys + the hashed
	// key (idempotency.Key) is a record's Redis key.
	rdb      *redis.Client
	idemKeys string
}

// customer is the user the tests' saga calls act for.
const customer = "0190a0c4-52f7-7b8e-9d1e-4c3b2a190a0c"

type setupOpts struct {
	redisAddr string
	redisDown bool
	// lockTimeout, if set, is the lock_timeout of the service's connections:
	// a lock wait longer than that fails with SQLSTATE 55P03.
	lockTimeout time.Duration
}

// setup runs the payment gRPC API the way run.go wires it (grpcserver's
// interceptors, the idempotency guard on real Redis, PostgreSQL) on a free
// port, and returns a client for it.
func setup(t *testing.T, opts ...func(*setupOpts)) testBundle {
	t.Helper()
	o := setupOpts{redisAddr: "127.0.0.1:6379"}
	for _, f := range opts {
		f(&o)
	}
	pool := newTestDB(t, o.lockTimeout)
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.DiscardHandler)

	ropts := &redis.Options{Addr: o.redisAddr}
	if o.redisDown {
		// Fail fast: no retries against a server that is not there.
		ropts.MaxRetries, ropts.DialTimeout = -1, 100*time.Millisecond
	}
	rdb := redis.NewClient(ropts)
	t.Cleanup(func() { _ = rdb.Close() })
	prefix := make([]byte, 6)
	_, _ = rand.Read(prefix)
	idemPrefix := "payment-test:" + hex.EncodeToString(prefix) + ":"
	pki := authtest.New(t)
	store, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{
		Prefix: idemPrefix, Service: "payment", Keys: pki.Keyring("payment", config.PIIKeys),
	})
	require.NoError(t, err)
	guard, err := idempotency.New(store, grpcapi.IdempotencyPolicies(), idempotency.Options{}, reg, logger)
	require.NoError(t, err)

	w, err := outbox.NewWriter(nil, reg)
	require.NoError(t, err)
	m, err := optlock.NewMetrics(reg)
	require.NoError(t, err)
	signer, err := optlock.NewSigner("k1", map[string][]byte{"k1": []byte(strings.Repeat("s", 32))})
	require.NoError(t, err)
	svc := app.New(postgres.NewRepository(pool, w), payment.DeclineRules{AboveMinor: 1_000_000}, m)
	api := grpcapi.New(svc, signer, logger)

	cfg := grpcserver.Config{Addr: "127.0.0.1:0"}
	cfg.Authorizer, cfg.Credentials = pki.Authorizer("payment", grpcapi.Policies())
	srv, err := grpcserver.New(cfg, logger, reg,
		func(s grpc.ServiceRegistrar) { paymentv1.RegisterPaymentServiceServer(s, api) },
		grpcserver.WithUnaryInterceptors(guard.UnaryServerInterceptor()))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	return testBundle{
		pool:     pool,
		client:   paymentv1.NewPaymentServiceClient(pki.DialAs("orchestrator", "payment", srv.Addr().String())),
		user:     paymentv1.NewPaymentServiceClient(pki.Dial(srv.Addr().String())),
		pki:      pki,
		addr:     srv.Addr().String(),
		signer:   signer,
		rdb:      rdb,
		idemKeys: idemPrefix + "payment:",
	}
}

// withKey returns a context carrying an idempotency key whose calls (on
// b.client) act for customer.
func withKey(key string) context.Context {
	return withKeyFor(customer, key)
}

func withKeyFor(user, key string) context.Context {
	ctx := caller.WithDelegation(context.Background(), caller.Delegation{User: user, Permissions: []string{grpcapi.PermPlaceOrder}})
	return metadata.AppendToOutgoingContext(ctx, idempotency.MetadataKey, key)
}

func newKey() string   { return uuid.NewString() }
func newOrder() string { return uuid.Must(uuid.NewV7()).String() }

func usd(minor int64) *commonv1.Money {
	return &commonv1.Money{CurrencyCode: "USD", AmountMinor: minor}
}

func processReq(order string, minor int64, method string) *paymentv1.ProcessPaymentRequest {
	return &paymentv1.ProcessPaymentRequest{OrderId: order, Amount: usd(minor), PaymentMethod: method}
}

func requireCode(t *testing.T, err error, code codes.Code, msgContains string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status: %v", err)
	require.Equal(t, code, st.Code(), st.Message())
	require.Contains(t, st.Message(), msgContains)
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func paymentsOf(t *testing.T, b testBundle, order string) int {
	return count(t, b.pool, `SELECT count(*) FROM payments WHERE order_id = $1`, order)
}

func eventsOf(t *testing.T, b testBundle, paymentID string) []string {
	return servicetest.OutboxEvents(t, b.pool, paymentID)
}

func TestProcessPayment(t *testing.T) {
	t.Parallel()
	b := setup(t)

	t.Run("an ordinary payment is captured", func(t *testing.T) {
		t.Parallel()
		order := newOrder()
		resp, err := b.client.ProcessPayment(withKey(newKey()), processReq(order, 1250, "tok_visa"))
		require.NoError(t, err)
		p := resp.GetPayment()
		require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED, p.GetStatus())
		require.Equal(t, order, p.GetOrderId())
		require.True(t, proto.Equal(usd(1250), p.GetAmount()))
		require.True(t, proto.Equal(usd(0), p.GetRefunded()))
		require.Empty(t, p.GetDeclineReason())
		require.NotEmpty(t, p.GetCreateTime())
		version, err := b.signer.Verify(event.AggregatePayment, p.GetPaymentId(), p.GetVersionToken())
		require.NoError(t, err)
		require.EqualValues(t, 1, version)
		require.Equal(t, []string{event.PaymentProcessed}, eventsOf(t, b, p.GetPaymentId()))
	})

	t.Run("the test card is declined as a normal response", func(t *testing.T) {
		t.Parallel()
		order := newOrder()
		resp, err := b.client.ProcessPayment(withKey(newKey()), processReq(order, 1250, payment.TestCardDecline))
		require.NoError(t, err)
		require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_DECLINED, resp.GetPayment().GetStatus())
		require.Equal(t, payment.ReasonCardDeclined, resp.GetPayment().GetDeclineReason())
		require.Equal(t, 1, paymentsOf(t, b, order), "a decline is stored: the order has its one payment")
		require.Equal(t, []string{event.PaymentDeclined}, eventsOf(t, b, resp.GetPayment().GetPaymentId()))
	})

	t.Run("an amount above the limit is declined", func(t *testing.T) {
		t.Parallel()
		resp, err := b.client.ProcessPayment(withKey(newKey()), processReq(newOrder(), 1_000_001, "tok_visa"))
		require.NoError(t, err)
		require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_DECLINED, resp.GetPayment().GetStatus())
		require.Equal(t, payment.ReasonAmountLimit, resp.GetPayment().GetDeclineReason())
	})

	t.Run("bad input is InvalidArgument naming the field and writes nothing", func(t *testing.T) {
		t.Parallel()
		order := newOrder()
		tests := []struct {
			name string
			req  *paymentv1.ProcessPaymentRequest
			msg  string
		}{
			{"zero amount", processReq(order, 0, "tok_visa"), "amount.amount_minor: must be positive"},
			{"negative amount", processReq(order, -1, "tok_visa"), "amount.amount_minor: must be positive"},
			{"missing amount", &paymentv1.ProcessPaymentRequest{OrderId: order, PaymentMethod: "tok_visa"}, "amount: required"},
			{"unknown currency", &paymentv1.ProcessPaymentRequest{OrderId: order, PaymentMethod: "tok_visa",
				Amount: &commonv1.Money{CurrencyCode: "XXX", AmountMinor: 5}}, "amount.currency_code: unknown currency"},
			{"malformed order id", processReq("order-1", 5, "tok_visa"), "order_id: not a UUID"},
			{"missing order id", processReq("", 5, "tok_visa"), "order_id: required"},
			{"missing payment method", processReq(order, 5, ""), "payment_method: required"},
		}
		for _, tc := range tests {
			_, err := b.client.ProcessPayment(withKey(newKey()), tc.req)
			requireCode(t, err, codes.InvalidArgument, tc.msg)
		}
		require.Equal(t, 0, paymentsOf(t, b, order))
	})

	t.Run("a missing or too long idempotency key is InvalidArgument and writes nothing", func(t *testing.T) {
		t.Parallel()
		order := newOrder()
		noKey := caller.WithDelegation(context.Background(), caller.Delegation{User: customer, Permissions: []string{grpcapi.PermPlaceOrder}})
		_, err := b.client.ProcessPayment(noKey, processReq(order, 5, "tok_visa"))
		requireCode(t, err, codes.InvalidArgument, "idempotency-key")
		_, err = b.client.ProcessPayment(withKey(strings.Repeat("k", 256)), processReq(order, 5, "tok_visa"))
		requireCode(t, err, codes.InvalidArgument, "idempotency-key must be at most 255 characters")
		require.Equal(t, 0, paymentsOf(t, b, order))
		_, err = b.client.ProcessPayment(withKey(strings.Repeat("k", 219)+newKey()), processReq(order, 5, "tok_visa"))
		require.NoError(t, err, "a key of exactly 255 characters is accepted")
		require.Equal(t, 1, paymentsOf(t, b, order))
	})

	t.Run("a retry with the same key replays the response and writes once", func(t *testing.T) {
		t.Parallel()
		order, key := newOrder(), newKey()
		first, err := b.client.ProcessPayment(withKey(key), processReq(order, 700, "tok_visa"))
		require.NoError(t, err)
		var header metadata.MD
		again, err := b.client.ProcessPayment(withKey(key), processReq(order, 700, "tok_visa"), grpc.Header(&header))
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again), "the replay is the same response")
		require.Equal(t, []string{"true"}, header.Get(idempotency.ReplayedHeader))
		require.Equal(t, 1, paymentsOf(t, b, order))
		require.Len(t, eventsOf(t, b, first.GetPayment().GetPaymentId()), 1)
	})

	t.Run("the same key with a different body is rejected", func(t *testing.T) {
		t.Parallel()
		key := newKey()
		_, err := b.client.ProcessPayment(withKey(key), processReq(newOrder(), 700, "tok_visa"))
		require.NoError(t, err)
		other := newOrder()
		_, err = b.client.ProcessPayment(withKey(key), processReq(other, 700, "tok_visa"))
		requireCode(t, err, codes.FailedPrecondition, "idempotency-key was already used with a different request")
		require.Equal(t, 0, paymentsOf(t, b, other))
	})

	t.Run("a new key for a paid order with the same amount returns the payment", func(t *testing.T) {
		t.Parallel()
		order := newOrder()
		first, err := b.client.ProcessPayment(withKey(newKey()), processReq(order, 700, "tok_visa"))
		require.NoError(t, err)
		again, err := b.client.ProcessPayment(withKey(newKey()), processReq(order, 700, "tok_visa"))
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again))
		require.Len(t, eventsOf(t, b, first.GetPayment().GetPaymentId()), 1)
	})

	t.Run("a new key for a paid order with another amount is FailedPrecondition", func(t *testing.T) {
		t.Parallel()
		order := newOrder()
		_, err := b.client.ProcessPayment(withKey(newKey()), processReq(order, 700, "tok_visa"))
		require.NoError(t, err)
		_, err = b.client.ProcessPayment(withKey(newKey()), processReq(order, 701, "tok_visa"))
		requireCode(t, err, codes.FailedPrecondition, "order_id: already has a payment of a different amount")
		require.Equal(t, 1, paymentsOf(t, b, order))
	})
}

// concurrently runs fn n times at once and returns the results.
func concurrently[T any](n int, fn func(i int) (T, error)) ([]T, []error) {
	out, errs := make([]T, n), make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			out[i], errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return out, errs
}

func TestProcessPaymentConcurrency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 50

	t.Run("50 identical concurrent requests produce exactly one payment", func(t *testing.T) {
		t.Parallel()
		order, key := newOrder(), newKey()
		resps, errs := concurrently(n, func(int) (*paymentv1.ProcessPaymentResponse, error) {
			return b.client.ProcessPayment(withKey(key), processReq(order, 900, "tok_visa"))
		})
		var ok []*paymentv1.ProcessPaymentResponse
		for i, err := range errs {
			if err != nil {
				// A duplicate arriving while the first runs is told to retry.
				requireCode(t, err, codes.Aborted, "in progress")
				continue
			}
			ok = append(ok, resps[i])
		}
		require.NotEmpty(t, ok)
		for _, r := range ok {
			require.True(t, proto.Equal(ok[0], r))
		}
		require.Equal(t, 1, paymentsOf(t, b, order))
		require.Len(t, eventsOf(t, b, ok[0].GetPayment().GetPaymentId()), 1)

		// Once the first has finished, a retry is served the replay.
		again, err := b.client.ProcessPayment(withKey(key), processReq(order, 900, "tok_visa"))
		require.NoError(t, err)
		require.True(t, proto.Equal(ok[0], again))
	})

	t.Run("50 concurrent requests with different keys for one order produce exactly one payment", func(t *testing.T) {
		t.Parallel()
		order := newOrder()
		resps, errs := concurrently(n, func(int) (*paymentv1.ProcessPaymentResponse, error) {
			return b.client.ProcessPayment(withKey(newKey()), processReq(order, 900, "tok_visa"))
		})
		for i, err := range errs {
			require.NoError(t, err)
			require.Equal(t, resps[0].GetPayment().GetPaymentId(), resps[i].GetPayment().GetPaymentId())
		}
		require.Equal(t, 1, paymentsOf(t, b, order))
		require.Len(t, eventsOf(t, b, resps[0].GetPayment().GetPaymentId()), 1)
	})
}

func TestRefundPayment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	captured := func(t *testing.T) *paymentv1.Payment {
		t.Helper()
		resp, err := b.client.ProcessPayment(withKey(newKey()), processReq(newOrder(), 3000, "tok_visa"))
		require.NoError(t, err)
		return resp.GetPayment()
	}

	t.Run("a captured payment is refunded in full", func(t *testing.T) {
		t.Parallel()
		p := captured(t)
		resp, err := b.client.RefundPayment(withKey(newKey()), &paymentv1.RefundPaymentRequest{PaymentId: p.GetPaymentId(), Reason: "out of stock"})
		require.NoError(t, err)
		r := resp.GetPayment()
		require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED, r.GetStatus())
		require.True(t, proto.Equal(usd(3000), r.GetRefunded()))
		version, err := b.signer.Verify(event.AggregatePayment, r.GetPaymentId(), r.GetVersionToken())
		require.NoError(t, err)
		require.EqualValues(t, 2, version)
		require.Equal(t, []string{event.PaymentProcessed, event.PaymentRefunded}, eventsOf(t, b, p.GetPaymentId()))
	})

	t.Run("refunding twice refunds once", func(t *testing.T) {
		t.Parallel()
		p := captured(t)
		first, err := b.client.RefundPayment(withKey(newKey()), &paymentv1.RefundPaymentRequest{OrderId: p.GetOrderId()})
		require.NoError(t, err)
		second, err := b.client.RefundPayment(withKey(newKey()), &paymentv1.RefundPaymentRequest{PaymentId: p.GetPaymentId()})
		require.NoError(t, err)
		require.True(t, proto.Equal(first, second))
		require.Equal(t, []string{event.PaymentProcessed, event.PaymentRefunded}, eventsOf(t, b, p.GetPaymentId()))
		require.Equal(t, 3000, count(t, b.pool, `SELECT refunded_minor FROM payments WHERE id = $1`, p.GetPaymentId()))
	})

	t.Run("a retry with the same key replays the refund", func(t *testing.T) {
		t.Parallel()
		p := captured(t)
		key := newKey()
		req := &paymentv1.RefundPaymentRequest{PaymentId: p.GetPaymentId()}
		first, err := b.client.RefundPayment(withKey(key), req)
		require.NoError(t, err)
		var header metadata.MD
		again, err := b.client.RefundPayment(withKey(key), req, grpc.Header(&header))
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again))
		require.Equal(t, []string{"true"}, header.Get(idempotency.ReplayedHeader))
		_, err = b.client.RefundPayment(withKey(key), &paymentv1.RefundPaymentRequest{PaymentId: p.GetPaymentId(), Reason: "x"})
		requireCode(t, err, codes.FailedPrecondition, "idempotency-key was already used with a different request")
	})

	t.Run("refunding a declined payment succeeds without change", func(t *testing.T) {
		t.Parallel()
		resp, err := b.client.ProcessPayment(withKey(newKey()), processReq(newOrder(), 3000, payment.TestCardDecline))
		require.NoError(t, err)
		declined := resp.GetPayment()
		for _, req := range []*paymentv1.RefundPaymentRequest{{PaymentId: declined.GetPaymentId()}, {OrderId: declined.GetOrderId()}} {
			r, err := b.client.RefundPayment(withKey(newKey()), req)
			require.NoError(t, err, "a compensation of a decline succeeds")
			require.True(t, proto.Equal(declined, r.GetPayment()), "unchanged: %v", r.GetPayment())
		}
		require.Equal(t, []string{event.PaymentDeclined}, eventsOf(t, b, declined.GetPaymentId()))
	})

	t.Run("an unknown payment id is NotFound", func(t *testing.T) {
		t.Parallel()
		_, err := b.client.RefundPayment(withKey(newKey()), &paymentv1.RefundPaymentRequest{PaymentId: newOrder()})
		requireCode(t, err, codes.NotFound, "payment not found")
	})

	t.Run("an order without a payment is VOIDED, and a later ProcessPayment captures nothing", func(t *testing.T) {
		t.Parallel()
		order := newOrder()
		r, err := b.client.RefundPayment(withKey(newKey()), &paymentv1.RefundPaymentRequest{OrderId: order, Reason: "saga compensation"})
		require.NoError(t, err)
		voided := r.GetPayment()
		require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_VOIDED, voided.GetStatus())
		require.Equal(t, order, voided.GetOrderId())
		require.NotEmpty(t, voided.GetPaymentId())
		require.Nil(t, voided.GetAmount(), "nothing was ever asked")
		require.Nil(t, voided.GetRefunded())
		require.Empty(t, eventsOf(t, b, voided.GetPaymentId()), "no money moved, no event")

		p, err := b.client.ProcessPayment(withKey(newKey()), processReq(order, 3000, "tok_visa"))
		require.NoError(t, err)
		require.True(t, proto.Equal(voided, p.GetPayment()), "got %v", p.GetPayment())
		g, err := b.client.GetPayment(context.Background(), &paymentv1.GetPaymentRequest{OrderId: order})
		require.NoError(t, err)
		require.True(t, proto.Equal(voided, g.GetPayment()))
		require.Equal(t, 1, paymentsOf(t, b, order))
		require.Empty(t, eventsOf(t, b, voided.GetPaymentId()))
	})

	t.Run("bad input is InvalidArgument naming the field", func(t *testing.T) {
		t.Parallel()
		p := captured(t)
		tests := []struct {
			req *paymentv1.RefundPaymentRequest
			msg string
		}{
			{&paymentv1.RefundPaymentRequest{}, "payment_id: exactly one of payment_id and order_id is required"},
			{&paymentv1.RefundPaymentRequest{PaymentId: p.GetPaymentId(), OrderId: p.GetOrderId()}, "order_id: exactly one of"},
			{&paymentv1.RefundPaymentRequest{PaymentId: "nope"}, "payment_id: not a UUID"},
			{&paymentv1.RefundPaymentRequest{OrderId: "nope"}, "order_id: not a UUID"},
			{&paymentv1.RefundPaymentRequest{PaymentId: p.GetPaymentId(), Reason: strings.Repeat("r", 501)}, "reason: must be at most 500 bytes"},
		}
		for _, tc := range tests {
			_, err := b.client.RefundPayment(withKey(newKey()), tc.req)
			requireCode(t, err, codes.InvalidArgument, tc.msg)
		}
		require.Len(t, eventsOf(t, b, p.GetPaymentId()), 1, "nothing written")
	})

	t.Run("concurrent refunds with different keys refund once", func(t *testing.T) {
		t.Parallel()
		p := captured(t)
		resps, errs := concurrently(20, func(int) (*paymentv1.RefundPaymentResponse, error) {
			return b.client.RefundPayment(withKey(newKey()), &paymentv1.RefundPaymentRequest{PaymentId: p.GetPaymentId()})
		})
		for i, err := range errs {
			require.NoError(t, err)
			require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED, resps[i].GetPayment().GetStatus())
		}
		require.Equal(t, []string{event.PaymentProcessed, event.PaymentRefunded}, eventsOf(t, b, p.GetPaymentId()))
	})
}

func TestGetPayment(t *testing.T) {
	t.Parallel()
	b := setup(t)
	resp, err := b.client.ProcessPayment(withKey(newKey()), processReq(newOrder(), 3000, "tok_visa"))
	require.NoError(t, err)
	p := resp.GetPayment()

	t.Run("by payment id and by order id, without an idempotency key", func(t *testing.T) {
		byID, err := b.client.GetPayment(context.Background(), &paymentv1.GetPaymentRequest{PaymentId: p.GetPaymentId()})
		require.NoError(t, err)
		require.True(t, proto.Equal(p, byID.GetPayment()))
		byOrder, err := b.client.GetPayment(context.Background(), &paymentv1.GetPaymentRequest{OrderId: p.GetOrderId()})
		require.NoError(t, err)
		require.True(t, proto.Equal(p, byOrder.GetPayment()))
	})

	t.Run("unknown is NotFound and bad ids are InvalidArgument", func(t *testing.T) {
		_, err := b.client.GetPayment(context.Background(), &paymentv1.GetPaymentRequest{OrderId: newOrder()})
		requireCode(t, err, codes.NotFound, "payment not found")
		_, err = b.client.GetPayment(context.Background(), &paymentv1.GetPaymentRequest{PaymentId: "1"})
		requireCode(t, err, codes.InvalidArgument, "payment_id: not a UUID")
		_, err = b.client.GetPayment(context.Background(), &paymentv1.GetPaymentRequest{})
		requireCode(t, err, codes.InvalidArgument, "payment_id: exactly one")
	})
}

func TestInternalErrorsDoNotLeak(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.pool.Exec(context.Background(), `ALTER TABLE payments RENAME TO payments_gone`)
	require.NoError(t, err)
	_, err = b.client.ProcessPayment(withKey(newKey()), processReq(newOrder(), 5, "tok_visa"))
	st, _ := status.FromError(err)
	require.Equal(t, codes.Internal, st.Code())
	require.Equal(t, "internal error", st.Message())
	_, err = b.client.GetPayment(context.Background(), &paymentv1.GetPaymentRequest{OrderId: newOrder()})
	st, _ = status.FromError(err)
	require.Equal(t, codes.Internal, st.Code())
	require.Equal(t, "internal error", st.Message())
}

func TestDatabaseLockTimeoutIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, func(o *setupOpts) { o.lockTimeout = 100 * time.Millisecond })
	resp, err := b.client.ProcessPayment(withKey(newKey()), processReq(newOrder(), 3000, "tok_visa"))
	require.NoError(t, err)
	p := resp.GetPayment()

	// Another transaction holds the payment row: the refund's conditional
	// update waits longer than lock_timeout (SQLSTATE 55P03).
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SELECT 1 FROM payments WHERE id = $1 FOR UPDATE`, p.GetPaymentId())
	require.NoError(t, err)

	key := newKey()
	_, err = b.client.RefundPayment(withKey(key), &paymentv1.RefundPaymentRequest{PaymentId: p.GetPaymentId()})
	requireCode(t, err, codes.Unavailable, "temporarily unavailable; retry")
	require.Equal(t, "temporarily unavailable; retry", status.Convert(err).Message())

	// Unavailable is not stored: once the lock is gone, a retry with the
	// same key refunds.
	require.NoError(t, tx.Rollback(ctx))
	r, err := b.client.RefundPayment(withKey(key), &paymentv1.RefundPaymentRequest{PaymentId: p.GetPaymentId()})
	require.NoError(t, err)
	require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED, r.GetPayment().GetStatus())
}

func TestRedisDownStillPaysOnce(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: every idempotency store call fails, and the
	// RedisDownSafe policy lets the calls through to the database guard.
	b := setup(t, func(o *setupOpts) { o.redisAddr, o.redisDown = "127.0.0.1:1", true })
	order, key := newOrder(), newKey()
	first, err := b.client.ProcessPayment(withKey(key), processReq(order, 400, "tok_visa"))
	require.NoError(t, err)
	again, err := b.client.ProcessPayment(withKey(key), processReq(order, 400, "tok_visa"))
	require.NoError(t, err)
	require.Equal(t, first.GetPayment().GetPaymentId(), again.GetPayment().GetPaymentId())
	require.Equal(t, 1, paymentsOf(t, b, order))

	for range 2 {
		r, err := b.client.RefundPayment(withKey(key), &paymentv1.RefundPaymentRequest{OrderId: order})
		require.NoError(t, err)
		require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED, r.GetPayment().GetStatus())
	}
	require.Equal(t, []string{event.PaymentProcessed, event.PaymentRefunded}, eventsOf(t, b, first.GetPayment().GetPaymentId()))
}

// The attacks that worked before callers were verified: a stranger
// refunding or voiding, charging an order that is not theirs, reading
// someone's payment. Each is refused and changes nothing.
func TestAuthorization(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p, err := b.client.ProcessPayment(withKey(newKey()), processReq(newOrder(), 500, "tok_visa"))
	require.NoError(t, err)
	asUser := func(user string, roles ...string) context.Context {
		return metadata.AppendToOutgoingContext(authtest.AsUser(context.Background(), b.pki.Token(user, roles...)),
			idempotency.MetadataKey, newKey())
	}
	unchanged := func(t *testing.T) {
		t.Helper()
		require.Equal(t, 1, count(t, b.pool, `SELECT count(*) FROM payments`))
		require.Equal(t, 1, count(t, b.pool, `SELECT count(*) FROM payments WHERE status = 'CAPTURED'`))
	}

	t.Run("users, even admins, cannot charge or refund", func(t *testing.T) {
		for _, ctx := range []context.Context{asUser(customer), asUser("mallory"), asUser("root", caller.RoleAdmin)} {
			_, err := b.user.RefundPayment(ctx, &paymentv1.RefundPaymentRequest{PaymentId: p.GetPayment().GetPaymentId()})
			requireCode(t, err, codes.PermissionDenied, "allowed only for the orchestrator service acting for a user")
			_, err = b.user.ProcessPayment(ctx, processReq(newOrder(), 5, "tok_visa"))
			requireCode(t, err, codes.PermissionDenied, "allowed only for the orchestrator service acting for a user")
		}
		unchanged(t)
	})

	t.Run("another service cannot charge or refund, with or without a user", func(t *testing.T) {
		inventory := paymentv1.NewPaymentServiceClient(b.pki.DialAs("inventory", "payment", b.addr))
		_, err := inventory.RefundPayment(withKey(newKey()), &paymentv1.RefundPaymentRequest{PaymentId: p.GetPayment().GetPaymentId()})
		requireCode(t, err, codes.PermissionDenied, "allowed only for the orchestrator service")
		unchanged(t)
	})

	t.Run("a caller without credentials is unauthenticated", func(t *testing.T) {
		_, err := b.user.GetPayment(context.Background(), &paymentv1.GetPaymentRequest{PaymentId: p.GetPayment().GetPaymentId()})
		requireCode(t, err, codes.Unauthenticated, "credentials required")
		_, err = b.user.RefundPayment(metadata.AppendToOutgoingContext(context.Background(), "x-user-id", "orchestrator", idempotency.MetadataKey, newKey()),
			&paymentv1.RefundPaymentRequest{PaymentId: p.GetPayment().GetPaymentId()})
		requireCode(t, err, codes.Unauthenticated, "credentials required")
		unchanged(t)
	})

	t.Run("a payment is shown to its customer and operators only", func(t *testing.T) {
		req := &paymentv1.GetPaymentRequest{PaymentId: p.GetPayment().GetPaymentId()}
		for _, ctx := range []context.Context{asUser(customer), asUser("ops", caller.RoleOperator)} {
			got, err := b.user.GetPayment(ctx, req)
			require.NoError(t, err)
			require.Equal(t, p.GetPayment().GetPaymentId(), got.GetPayment().GetPaymentId())
		}
		_, err := b.user.GetPayment(asUser("mallory"), req)
		requireCode(t, err, codes.NotFound, "")
	})
}
