package grpcapi_test

import (
	"context"
	"crypto/rand"
	"fmt"
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
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	sessionv1 "github.com/goodgo/goodgo/proto/goodgo/session/v1"
	"github.com/goodgo/goodgo/services/order/internal/app"
	"github.com/goodgo/goodgo/services/order/internal/grpcapi"
	"github.com/goodgo/goodgo/services/order/internal/inventorytest"
	"github.com/goodgo/goodgo/services/order/internal/peers"
	"github.com/goodgo/goodgo/services/order/internal/postgres"
)

const redisURL = "redis://127.0.0.1:6379/0"

// testBundle is the order API served the way run serves it: the real gRPC
// server and interceptors with mTLS and the service's authorization
// policies, the idempotency guard on real Redis, the repository on a real
// (per-test) PostgreSQL database, and the catalog adapter talking gRPC to a
// fake inventory service. client is an end user's connection (calls carry
// a user's token), saga the orchestrator's (calls act for a user).
type testBundle struct {
	pki         *authtest.PKI
	user1Token  string
	client      orderv1.OrderServiceClient
	saga        orderv1.OrderServiceClient
	sessions    sessionv1.SessionServiceClient
	pool        *pgxpool.Pool
	redis       *redis.Client
	redisPrefix string
	inventory   *inventorytest.Server
}

// The tests' customers: their user ids (token subjects) are their customer
// ids. user1 places the orders of placeRequest.
const (
	user1 = "0190a0c4-52f7-7b8e-9d1e-4c3b2a190a0c"
	user2 = "0190a0c4-52f7-7b8e-9d1e-4c3b2a190a0d"
)

func setup(tb testing.TB) testBundle { return setupWith(tb, 0) }

// setupWith is setup whose service connections, if lockTimeout is set, give
// up a lock wait after lockTimeout (SQLSTATE 55P03).
func setupWith(tb testing.TB, lockTimeout time.Duration) testBundle {
	tb.Helper()
	url, pool := pgtest.NewDatabase(tb, db.Order)
	if lockTimeout > 0 {
		pool = pgtest.LockTimeoutPool(tb, url, lockTimeout)
	}

	opts, err := redis.ParseURL(redisURL)
	require.NoError(tb, err)
	opts.PoolSize = 64
	rdb := redis.NewClient(opts)
	tb.Cleanup(func() { _ = rdb.Close() })
	prefix := "order-test:" + uuid.NewString() + ":"
	tb.Cleanup(func() { deleteKeys(tb, rdb, prefix) })

	pki := authtest.New(tb)
	inv := inventorytest.Start(tb, pki,
		inventorytest.Product("SKU-1", "Widget", "EUR", 1250, 100),
		inventorytest.Product("SKU-2", "Gadget", "EUR", 99, 100),
		inventorytest.Product("USD-1", "Dollar thing", "USD", 100, 100),
	)
	conn := pki.DialAs("order", "inventory", inv.Addr())

	reg := prometheus.NewRegistry()
	keys, err := keyring.New("k1", map[string][]byte{"k1": randomBytes(32)})
	require.NoError(tb, err)
	writer, err := outbox.NewWriter(keys, reg)
	require.NoError(tb, err)
	locks, err := optlock.NewMetrics(reg)
	require.NoError(tb, err)
	signer, err := optlock.NewSigner("t1", map[string][]byte{"t1": randomBytes(32)})
	require.NoError(tb, err)
	store, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix, Service: "order", Keys: pki.Keyring("order", config.PIIKeys)})
	require.NoError(tb, err)
	guard, err := idempotency.New(store, grpcapi.IdempotencyPolicies(), idempotency.Options{}, reg, nil)
	require.NoError(tb, err)

	repo, err := postgres.NewRepository(pool, writer, pki.Keyring("order", config.PIIKeys))
	require.NoError(tb, err)
	a := app.New(repo, peers.NewCatalog(inventoryv1.NewInventoryServiceClient(conn), time.Second), locks)
	cfg := grpcserver.Config{Addr: "127.0.0.1:0"}
	cfg.Authorizer, cfg.Credentials = pki.Authorizer("order", grpcapi.Policies())
	srv, err := grpcserver.New(cfg, nil, reg, func(s grpc.ServiceRegistrar) {
		orderv1.RegisterOrderServiceServer(s, grpcapi.New(a, signer, nil))
		sessionv1.RegisterSessionServiceServer(s, grpcapi.NewSessions(guard, nil))
	}, grpcserver.WithUnaryInterceptors(guard.UnaryServerInterceptor()))
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	tb.Cleanup(func() {
		cancel()
		require.NoError(tb, <-served)
	})

	user := pki.Dial(srv.Addr().String())
	return testBundle{
		pki:         pki,
		user1Token:  pki.Token(user1),
		client:      orderv1.NewOrderServiceClient(user),
		saga:        orderv1.NewOrderServiceClient(pki.DialAs("orchestrator", "order", srv.Addr().String())),
		sessions:    sessionv1.NewSessionServiceClient(user),
		pool:        pool,
		redis:       rdb,
		redisPrefix: prefix,
		inventory:   inv,
	}
}

func deleteKeys(tb testing.TB, rdb *redis.Client, prefix string) {
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil {
		tb.Errorf("list redis keys: %v", err)
		return
	}
	if len(keys) > 0 {
		if err := rdb.Del(ctx, keys...).Err(); err != nil {
			tb.Errorf("delete redis keys: %v", err)
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// withKey is a call context from user1 with an idempotency key.
func (b testBundle) withKey(key string) context.Context {
	return metadata.AppendToOutgoingContext(authtest.AsUser(context.Background(), b.user1Token), idempotency.MetadataKey, key)
}

// asUser is a call context from user, signed in with a token; roles are
// the token's roles.
func (b testBundle) asUser(user string, roles ...string) context.Context {
	return authtest.AsUser(context.Background(), b.pki.Token(user, roles...))
}

// asSaga is a call context of the orchestrator acting for user1 (the
// placer of placeRequest's orders), with an idempotency key; use it on
// b.saga.
func (b testBundle) asSaga(key string) context.Context {
	return asSagaFor(user1, key)
}

func asSagaFor(user, key string) context.Context {
	ctx := caller.WithDelegation(context.Background(), caller.Delegation{User: user, Permissions: []string{grpcapi.PermPlaceOrder}})
	return metadata.AppendToOutgoingContext(ctx, idempotency.MetadataKey, key)
}

func newKey() string { return uuid.NewString() }

func placeRequest() *orderv1.PlaceOrderRequest {
	return &orderv1.PlaceOrderRequest{
		CustomerId: "0190a0c4-52f7-7b8e-9d1e-4c3b2a190a0c",
		Items: []*orderv1.OrderItemInput{
			{Sku: "SKU-1", Quantity: 2},
			{Sku: "SKU-2", Quantity: 3},
		},
		ShippingAddress: &orderv1.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "London", PostalCode: "N1 9GU", CountryCode: "GB"},
		PaymentMethod:   "tok_visa",
	}
}

// otherRequest is placeRequest with another quantity: a different request
// under the same key.
func otherRequest() *orderv1.PlaceOrderRequest {
	r := placeRequest()
	r.Items[0].Quantity = 9
	return r
}

func (b testBundle) count(tb testing.TB, query string, args ...any) int {
	tb.Helper()
	var n int
	require.NoError(tb, b.pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

func (b testBundle) orders(tb testing.TB) int { return b.count(tb, "SELECT count(*) FROM orders") }

func (b testBundle) events(tb testing.TB, orderID string) []string {
	return servicetest.OutboxEvents(tb, b.pool, orderID)
}

func (b testBundle) place(t *testing.T) *orderv1.Order {
	t.Helper()
	return b.placeWith(t, newKey()).GetOrder()
}

// placeWith places placeRequest's order under key and returns the reply.
func (b testBundle) placeWith(t *testing.T, key string) *orderv1.PlaceOrderResponse {
	t.Helper()
	resp, err := b.client.PlaceOrder(b.withKey(key), placeRequest())
	require.NoError(t, err)
	return resp
}

// placeAndLoseKey places placeRequest's order under a fresh key, then
// deletes the idempotency records from Redis (as a Redis that lost its
// data); it returns the key and the reply.
func (b testBundle) placeAndLoseKey(t *testing.T) (string, *orderv1.PlaceOrderResponse) {
	t.Helper()
	key := newKey()
	first := b.placeWith(t, key)
	deleteKeys(t, b.redis, b.redisPrefix)
	return key, first
}

// requireKeyTaken places other under key, which placeRequest's order
// used already: refused, and still one order.
func (b testBundle) requireKeyTaken(t *testing.T, key string, other *orderv1.PlaceOrderRequest) {
	t.Helper()
	_, err := b.client.PlaceOrder(b.withKey(key), other)
	requireStatus(t, err, codes.FailedPrecondition, "idempotency-key was already used with a different request")
	require.Equal(t, 1, b.orders(t))
}

func requireStatus(t *testing.T, err error, code codes.Code, message string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status: %v", err)
	require.Equal(t, code, st.Code(), st.Message())
	require.Equal(t, message, st.Message())
}

func TestPlaceOrder(t *testing.T) {
	t.Parallel()

	t.Run("prices from the catalog and returns a pending order with a version token", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := b.place(t)
		require.NoError(t, uuid.Validate(o.GetOrderId()))
		require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_PENDING, o.GetStatus())
		require.Equal(t, "EUR", o.GetTotal().GetCurrencyCode())
		require.Equal(t, int64(2*1250+3*99), o.GetTotal().GetAmountMinor())
		require.Equal(t, "Widget", o.GetItems()[0].GetName())
		require.Equal(t, int64(1250), o.GetItems()[0].GetUnitPrice().GetAmountMinor())
		require.NotEmpty(t, o.GetVersionToken())
		require.NotNil(t, o.GetCreateTime())
		require.Equal(t, []string{"order.created.v1"}, b.events(t, o.GetOrderId()))
		require.Equal(t, []string{"order"}, b.inventory.Callers(), "the catalog is read with the order service's own certificate")

		got, err := b.client.GetOrder(b.asUser(user1), &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
		require.NoError(t, err)
		require.True(t, proto.Equal(o, got.GetOrder()), "GetOrder returns what PlaceOrder returned")
	})

	t.Run("bad input is InvalidArgument naming the field, and nothing is written", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		tooMany := make([]*orderv1.OrderItemInput, 51)
		for i := range tooMany {
			tooMany[i] = &orderv1.OrderItemInput{Sku: fmt.Sprintf("SKU-%d", i), Quantity: 1}
		}
		for _, tt := range []struct {
			name    string
			modify  func(*orderv1.PlaceOrderRequest)
			message string
		}{
			{"no items", func(r *orderv1.PlaceOrderRequest) { r.Items = nil }, "items: must have 1 to 50 lines"},
			{"51 items", func(r *orderv1.PlaceOrderRequest) { r.Items = tooMany }, "items: must have 1 to 50 lines"},
			{"zero quantity", func(r *orderv1.PlaceOrderRequest) { r.Items[1].Quantity = 0 }, "items[1].quantity: must be between 1 and 1000"},
			{"negative quantity", func(r *orderv1.PlaceOrderRequest) { r.Items[0].Quantity = -2 }, "items[0].quantity: must be between 1 and 1000"},
			{"duplicate SKU", func(r *orderv1.PlaceOrderRequest) { r.Items[1].Sku = "SKU-1" },
				"items[1].sku: duplicates items[0].sku; put the total quantity on one line"},
			{"no address", func(r *orderv1.PlaceOrderRequest) { r.ShippingAddress = nil }, "shipping_address: required"},
			{"bad country", func(r *orderv1.PlaceOrderRequest) { r.ShippingAddress.CountryCode = "United Kingdom" },
				"shipping_address.country_code: must be an ISO 3166-1 alpha-2 code"},
			{"no payment method", func(r *orderv1.PlaceOrderRequest) { r.PaymentMethod = "" }, "payment_method: required"},
		} {
			req := placeRequest()
			tt.modify(req)
			_, err := b.client.PlaceOrder(b.withKey(newKey()), req)
			requireStatus(t, err, codes.InvalidArgument, tt.message)
		}
		require.Zero(t, b.orders(t))
		require.Zero(t, b.inventory.Calls())
	})

	t.Run("the idempotency key is required and at most 255 characters", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.client.PlaceOrder(b.asUser(user1), placeRequest())
		requireStatus(t, err, codes.InvalidArgument, "idempotency-key metadata is required")
		_, err = b.client.PlaceOrder(b.withKey(strings.Repeat("k", 256)), placeRequest())
		requireStatus(t, err, codes.InvalidArgument, "idempotency-key must be at most 255 characters")
		_, err = b.client.PlaceOrder(b.withKey(strings.Repeat("k", 255)), placeRequest())
		require.NoError(t, err)
		require.Equal(t, 1, b.orders(t))
	})

	t.Run("an unknown SKU is NotFound naming its line", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		req := placeRequest()
		req.Items[1].Sku = "NOPE-1"
		_, err := b.client.PlaceOrder(b.withKey(newKey()), req)
		requireStatus(t, err, codes.NotFound, `items[1].sku: unknown SKU "NOPE-1"`)
		require.Zero(t, b.orders(t))
	})

	t.Run("items in two currencies are FailedPrecondition", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		req := placeRequest()
		req.Items[1].Sku = "USD-1"
		_, err := b.client.PlaceOrder(b.withKey(newKey()), req)
		st := status.Convert(err)
		require.Equal(t, codes.FailedPrecondition, st.Code())
		require.True(t, strings.HasPrefix(st.Message(), "items: priced in more than one currency"), st.Message())
		require.Zero(t, b.orders(t))
	})

	t.Run("an unavailable catalog is Unavailable without its detail, and the key can be retried", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		b.inventory.FailWith(status.Error(codes.Unavailable, "inventory db on fire at 10.0.0.7"))
		key := newKey()
		_, err := b.client.PlaceOrder(b.withKey(key), placeRequest())
		requireStatus(t, err, codes.Unavailable, "the product catalog is unavailable; retry later")
		require.Zero(t, b.orders(t))

		b.inventory.FailWith(nil)
		b.placeWith(t, key)
		require.Equal(t, 1, b.orders(t))
	})

	t.Run("a retry with the same key replays the response and writes nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		key := newKey()
		first := b.placeWith(t, key)
		var header metadata.MD
		again, err := b.client.PlaceOrder(b.withKey(key), placeRequest(), grpc.Header(&header))
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again))
		require.Equal(t, []string{"true"}, header.Get(idempotency.ReplayedHeader))
		require.Equal(t, 1, b.orders(t))
		require.Equal(t, 1, b.count(t, "SELECT count(*) FROM outbox"))
		require.Equal(t, int64(1), b.inventory.Calls())
	})

	t.Run("the same key with a different request is rejected", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		key := newKey()
		b.placeWith(t, key)
		b.requireKeyTaken(t, key, otherRequest())
	})

	t.Run("with the Redis record lost, the database still returns the first order", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		key, first := b.placeAndLoseKey(t)

		again := b.placeWith(t, key)
		require.Equal(t, first.GetOrder().GetOrderId(), again.GetOrder().GetOrderId())
		require.Equal(t, 1, b.orders(t))

		deleteKeys(t, b.redis, b.redisPrefix)
		b.requireKeyTaken(t, key, otherRequest())
	})

	t.Run("with the Redis record lost, the same key with another address is rejected", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		key, first := b.placeAndLoseKey(t)

		other := placeRequest()
		other.ShippingAddress.City = "Paris"
		b.requireKeyTaken(t, key, other)
		got, err := b.client.GetOrder(b.asUser(user1), &orderv1.GetOrderRequest{OrderId: first.GetOrder().GetOrderId()})
		require.NoError(t, err)
		require.Equal(t, "London", got.GetOrder().GetShippingAddress().GetCity())
	})

	t.Run("50 concurrent identical requests produce exactly one order", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		key := newKey()
		const n = 50
		resps := make([]*orderv1.PlaceOrderResponse, n)
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				resps[i], errs[i] = b.client.PlaceOrder(b.withKey(key), placeRequest())
			})
		}
		close(start)
		wg.Wait()

		var orderID string
		for i := range n {
			if errs[i] != nil {
				// A duplicate of a call still running is told to retry later.
				requireStatus(t, errs[i], codes.Aborted, "a request with this idempotency-key is in progress; retry later")
				continue
			}
			if orderID == "" {
				orderID = resps[i].GetOrder().GetOrderId()
			}
			require.Equal(t, orderID, resps[i].GetOrder().GetOrderId())
		}
		require.NotEmpty(t, orderID, "at least the first call succeeds")
		require.Equal(t, 1, b.orders(t))
		require.Equal(t, []string{"order.created.v1"}, b.events(t, orderID))

		// Retrying any of them gets the one order.
		again := b.placeWith(t, key)
		require.Equal(t, orderID, again.GetOrder().GetOrderId())
	})
}

func TestGetOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.GetOrder(b.asUser(user1), &orderv1.GetOrderRequest{OrderId: "42"})
	requireStatus(t, err, codes.InvalidArgument, "order_id: must be a UUID")
	_, err = b.client.GetOrder(b.asUser(user1), &orderv1.GetOrderRequest{OrderId: uuid.NewString()})
	requireStatus(t, err, codes.NotFound, "order_id: no such order")

	t.Run("an internal failure is Internal without detail", func(t *testing.T) {
		b := setup(t)
		o := b.place(t)
		b.pool.Close() // the database goes away under the service
		_, err := b.client.GetOrder(b.asUser(user1), &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
		requireStatus(t, err, codes.Internal, "internal error")
	})
}

func TestAuthorization(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.place(t) // by user1
	paris := &orderv1.Address{Name: "Ada Lovelace", Line1: "2 Rue de Rivoli", City: "Paris", PostalCode: "75001", CountryCode: "FR"}
	unchanged := func(t *testing.T) {
		t.Helper()
		require.Equal(t, []string{"order.created.v1"}, b.events(t, o.GetOrderId()))
	}

	t.Run("users cannot confirm or cancel, not even their own order", func(t *testing.T) {
		for _, ctx := range []context.Context{b.withKey(newKey()), metadata.AppendToOutgoingContext(b.asUser(user1, caller.RoleAdmin), idempotency.MetadataKey, newKey())} {
			_, err := b.client.ConfirmOrder(ctx, &orderv1.ConfirmOrderRequest{OrderId: o.GetOrderId()})
			requireStatus(t, err, codes.PermissionDenied, "allowed only for the orchestrator service acting for a user")
		}
		_, err := b.client.CancelOrder(b.withKey(newKey()), &orderv1.CancelOrderRequest{OrderId: o.GetOrderId(), Reason: "mine"})
		requireStatus(t, err, codes.PermissionDenied, "allowed only for the orchestrator service acting for a user")
		unchanged(t)
	})

	t.Run("the saga acting for another user may not confirm or cancel", func(t *testing.T) {
		_, err := b.saga.ConfirmOrder(asSagaFor(user2, newKey()), &orderv1.ConfirmOrderRequest{OrderId: o.GetOrderId()})
		requireStatus(t, err, codes.PermissionDenied, "the order may be confirmed or cancelled only for the customer who placed it")
		_, err = b.saga.CancelOrder(asSagaFor(user2, newKey()), &orderv1.CancelOrderRequest{OrderId: o.GetOrderId(), Reason: "x"})
		requireStatus(t, err, codes.PermissionDenied, "the order may be confirmed or cancelled only for the customer who placed it")
		unchanged(t)
	})

	t.Run("the orchestrator without a user to act for may not confirm", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(context.Background(), idempotency.MetadataKey, newKey())
		_, err := b.saga.ConfirmOrder(ctx, &orderv1.ConfirmOrderRequest{OrderId: o.GetOrderId()})
		requireStatus(t, err, codes.PermissionDenied, "the orchestrator service must act for a user here (on-behalf-of assertion)")
		unchanged(t)
	})

	t.Run("another user's order is NotFound, like an unknown one", func(t *testing.T) {
		_, err := b.client.GetOrder(b.asUser(user2), &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
		requireStatus(t, err, codes.NotFound, "order_id: no such order")
		_, err = b.client.UpdateShippingAddress(
			metadata.AppendToOutgoingContext(b.asUser(user2), idempotency.MetadataKey, newKey()),
			&orderv1.UpdateShippingAddressRequest{OrderId: o.GetOrderId(), ShippingAddress: paris, VersionToken: o.GetVersionToken()})
		requireStatus(t, err, codes.NotFound, "order_id: no such order")
		unchanged(t)
	})

	t.Run("nobody is anonymous", func(t *testing.T) {
		_, err := b.client.GetOrder(context.Background(), &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
		require.Equal(t, codes.Unauthenticated, status.Code(err), err)
		_, err = b.client.GetOrder(metadata.AppendToOutgoingContext(context.Background(), "x-user-id", user1), &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
		require.Equal(t, codes.Unauthenticated, status.Code(err), "a plain header names nobody: %v", err)
	})

	t.Run("a user orders only for themselves", func(t *testing.T) {
		req := placeRequest()
		req.CustomerId = user2
		_, err := b.client.PlaceOrder(b.withKey(newKey()), req)
		requireStatus(t, err, codes.PermissionDenied, "customer_id: must be your own user id (the subject of your token)")
		require.Equal(t, 1, b.orders(t))
	})

	t.Run("the placer and operators read it", func(t *testing.T) {
		for _, ctx := range []context.Context{b.asUser(user1), b.asUser("ops-1", caller.RoleOperator), b.asUser("root", caller.RoleAdmin)} {
			got, err := b.client.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
			require.NoError(t, err)
			require.Equal(t, o.GetOrderId(), got.GetOrder().GetOrderId())
		}
	})
}

// Logging out forgets the user's keys of calls whose replies hold their
// address; a retry with the key then gets the same order from the
// database guard, never a second order.
func TestLogoutForgetsSensitiveKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := newKey()
	first := b.placeWith(t, key)
	stored, err := b.redis.Keys(context.Background(), b.redisPrefix+"*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, stored)

	resp, err := b.sessions.Logout(b.asUser(user1), &sessionv1.LogoutRequest{})
	require.NoError(t, err)
	require.Equal(t, int32(1), resp.GetForgottenKeys())

	var header metadata.MD
	again, err := b.client.PlaceOrder(b.withKey(key), placeRequest(), grpc.Header(&header))
	require.NoError(t, err)
	require.Empty(t, header.Get(idempotency.ReplayedHeader), "not a replay from Redis")
	require.Equal(t, first.GetOrder().GetOrderId(), again.GetOrder().GetOrderId(), "the database still returns the first order")
	require.Equal(t, 1, b.orders(t))

	_, err = b.sessions.Logout(b.asUser(user2), &sessionv1.LogoutRequest{UserId: user1})
	requireStatus(t, err, codes.PermissionDenied, "user_id: only operators may log out another user")
	resp, err = b.sessions.Logout(b.asUser("ops-1", caller.RoleOperator), &sessionv1.LogoutRequest{UserId: user1})
	require.NoError(t, err)
	require.Equal(t, int32(1), resp.GetForgottenKeys(), "the retry's key, tracked again")
}

func TestDatabaseLockTimeoutIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupWith(t, 100*time.Millisecond)
	o := b.place(t)

	// Another transaction holds the order row: the confirmation's
	// conditional update waits longer than lock_timeout (SQLSTATE 55P03).
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SELECT 1 FROM orders WHERE id = $1 FOR UPDATE`, o.GetOrderId())
	require.NoError(t, err)

	key := newKey()
	_, err = b.saga.ConfirmOrder(b.asSaga(key), &orderv1.ConfirmOrderRequest{OrderId: o.GetOrderId()})
	requireStatus(t, err, codes.Unavailable, "temporarily unavailable; retry")

	// Unavailable is not stored: once the lock is gone, the retry with the
	// same key confirms.
	require.NoError(t, tx.Rollback(ctx))
	resp, err := b.saga.ConfirmOrder(b.asSaga(key), &orderv1.ConfirmOrderRequest{OrderId: o.GetOrderId()})
	require.NoError(t, err)
	require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, resp.GetOrder().GetStatus())
}

func TestConfirmOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.place(t)

	resp, err := b.saga.ConfirmOrder(b.asSaga(newKey()), &orderv1.ConfirmOrderRequest{OrderId: o.GetOrderId()})
	require.NoError(t, err)
	require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, resp.GetOrder().GetStatus())
	require.NotEqual(t, o.GetVersionToken(), resp.GetOrder().GetVersionToken())

	// A repeat with a new key (a new saga step attempt) is a no-op success.
	again, err := b.saga.ConfirmOrder(b.asSaga(newKey()), &orderv1.ConfirmOrderRequest{OrderId: o.GetOrderId()})
	require.NoError(t, err)
	require.True(t, proto.Equal(resp, again))
	require.Equal(t, []string{"order.created.v1", "order.confirmed.v1"}, b.events(t, o.GetOrderId()))

	_, err = b.saga.CancelOrder(b.asSaga(newKey()), &orderv1.CancelOrderRequest{OrderId: o.GetOrderId(), Reason: "late"})
	requireStatus(t, err, codes.FailedPrecondition, "order_id: order is CONFIRMED and cannot be cancelled")

	_, err = b.saga.ConfirmOrder(b.asSaga(newKey()), &orderv1.ConfirmOrderRequest{OrderId: "x"})
	requireStatus(t, err, codes.InvalidArgument, "order_id: must be a UUID")
	_, err = b.saga.ConfirmOrder(b.asSaga(newKey()), &orderv1.ConfirmOrderRequest{OrderId: uuid.NewString()})
	requireStatus(t, err, codes.NotFound, "order_id: no such order")
	noKey := caller.WithDelegation(context.Background(), caller.Delegation{User: user1, Permissions: []string{grpcapi.PermPlaceOrder}})
	_, err = b.saga.ConfirmOrder(noKey, &orderv1.ConfirmOrderRequest{OrderId: o.GetOrderId()})
	requireStatus(t, err, codes.InvalidArgument, "idempotency-key metadata is required")
}

func TestCancelOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	o := b.place(t)

	resp, err := b.saga.CancelOrder(b.asSaga(newKey()), &orderv1.CancelOrderRequest{OrderId: o.GetOrderId(), Reason: "payment declined"})
	require.NoError(t, err)
	require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_CANCELLED, resp.GetOrder().GetStatus())
	require.Equal(t, "payment declined", resp.GetOrder().GetCancelReason())

	again, err := b.saga.CancelOrder(b.asSaga(newKey()), &orderv1.CancelOrderRequest{OrderId: o.GetOrderId(), Reason: "again"})
	require.NoError(t, err)
	require.True(t, proto.Equal(resp, again))
	require.Equal(t, []string{"order.created.v1", "order.cancelled.v1"}, b.events(t, o.GetOrderId()))

	_, err = b.saga.ConfirmOrder(b.asSaga(newKey()), &orderv1.ConfirmOrderRequest{OrderId: o.GetOrderId()})
	requireStatus(t, err, codes.FailedPrecondition, "order_id: order is CANCELLED and cannot be confirmed")
	_, err = b.saga.CancelOrder(b.asSaga(newKey()), &orderv1.CancelOrderRequest{OrderId: o.GetOrderId(), Reason: strings.Repeat("r", 501)})
	requireStatus(t, err, codes.InvalidArgument, "reason: must be at most 500 characters")
}

// updateAddress changes the shipping address of order orderID to addr
// with token, as user1 under a fresh idempotency key.
func (b testBundle) updateAddress(orderID string, addr *orderv1.Address, token string) (*orderv1.UpdateShippingAddressResponse, error) {
	return b.client.UpdateShippingAddress(b.withKey(newKey()), &orderv1.UpdateShippingAddressRequest{
		OrderId: orderID, ShippingAddress: addr, VersionToken: token,
	})
}

func TestUpdateShippingAddress(t *testing.T) {
	t.Parallel()
	paris := &orderv1.Address{Name: "Ada Lovelace", Line1: "2 Rue de Rivoli", City: "Paris", PostalCode: "75001", CountryCode: "FR"}
	// requireRefused requires a change of o's address to paris with each
	// of tokens to fail with code and message, and o to have no event but
	// its creation.
	requireRefused := func(t *testing.T, b testBundle, o *orderv1.Order, tokens []string, code codes.Code, message string) {
		t.Helper()
		for _, token := range tokens {
			_, err := b.updateAddress(o.GetOrderId(), paris, token)
			requireStatus(t, err, code, message)
		}
		require.Equal(t, []string{"order.created.v1"}, b.events(t, o.GetOrderId()))
	}

	t.Run("with the token of the latest read it changes the address", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := b.place(t)
		read, err := b.client.GetOrder(b.asUser(user1), &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
		require.NoError(t, err)
		resp, err := b.updateAddress(o.GetOrderId(), paris, read.GetOrder().GetVersionToken())
		require.NoError(t, err)
		require.True(t, proto.Equal(paris, resp.GetOrder().GetShippingAddress()))
		require.NotEqual(t, read.GetOrder().GetVersionToken(), resp.GetOrder().GetVersionToken())
		require.Equal(t, []string{"order.created.v1", "order.shipping_address_changed.v1"}, b.events(t, o.GetOrderId()))

		t.Log("the old token is now stale")
		_, err = b.updateAddress(o.GetOrderId(), placeRequest().GetShippingAddress(), read.GetOrder().GetVersionToken())
		requireStatus(t, err, codes.Aborted, "version_token: stale; the order has changed, read it again")
		got, err := b.client.GetOrder(b.asUser(user1), &orderv1.GetOrderRequest{OrderId: o.GetOrderId()})
		require.NoError(t, err)
		require.Equal(t, "Paris", got.GetOrder().GetShippingAddress().GetCity())
	})

	t.Run("a forged token or another order's token is rejected as a conflict", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := b.place(t)
		other := b.place(t)
		tok := o.GetVersionToken()
		forged := tok[:len(tok)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(tok, "AA")]
		requireRefused(t, b, o, []string{forged, other.GetVersionToken()},
			codes.Aborted, "version_token: invalid; read the order again")
	})

	t.Run("something that is not a token at all is InvalidArgument", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := b.place(t)
		requireRefused(t, b, o, []string{"garbage", "!!!", o.GetVersionToken()[:10]},
			codes.InvalidArgument, "version_token: not a version token; use the one GetOrder returned")
	})

	t.Run("a missing token, a bad id or a bad address is InvalidArgument", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := b.place(t)
		_, err := b.updateAddress(o.GetOrderId(), paris, "")
		requireStatus(t, err, codes.InvalidArgument, "version_token: required; read the order first")
		_, err = b.updateAddress("nope", paris, o.GetVersionToken())
		requireStatus(t, err, codes.InvalidArgument, "order_id: must be a UUID")
		_, err = b.updateAddress(o.GetOrderId(), &orderv1.Address{Name: "x"}, o.GetVersionToken())
		requireStatus(t, err, codes.InvalidArgument, "shipping_address.line1: required")
	})

	t.Run("a confirmed order is FailedPrecondition", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := b.place(t)
		c, err := b.saga.ConfirmOrder(b.asSaga(newKey()), &orderv1.ConfirmOrderRequest{OrderId: o.GetOrderId()})
		require.NoError(t, err)
		_, err = b.updateAddress(o.GetOrderId(), paris, c.GetOrder().GetVersionToken())
		requireStatus(t, err, codes.FailedPrecondition, "order_id: order is CONFIRMED; the shipping address can change only while PENDING")
	})

	t.Run("a retry of a success with the same key replays it instead of conflicting", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := b.place(t)
		req := &orderv1.UpdateShippingAddressRequest{OrderId: o.GetOrderId(), ShippingAddress: paris, VersionToken: o.GetVersionToken()}
		key := newKey()
		first, err := b.client.UpdateShippingAddress(b.withKey(key), req)
		require.NoError(t, err)
		again, err := b.client.UpdateShippingAddress(b.withKey(key), req)
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again))
	})
}

// The orchestrator's reconciler pages through the orders still PENDING
// long after they were placed, oldest first, with what the saga needs;
// nobody else may list them.
func TestListStalePendingOrders(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	var placed []*orderv1.Order
	for range 5 {
		placed = append(placed, b.place(t))
	}
	// Four orders placed 10, 9, 8 and 7 minutes ago; the last one just now.
	for i, o := range placed[:4] {
		_, err := b.pool.Exec(ctx, "UPDATE orders SET created_at = now() - make_interval(mins => $2) WHERE id = $1", o.GetOrderId(), 10-i)
		require.NoError(t, err)
	}
	// The second has been confirmed: no longer PENDING.
	_, err := b.saga.ConfirmOrder(b.asSaga(newKey()), &orderv1.ConfirmOrderRequest{OrderId: placed[1].GetOrderId()})
	require.NoError(t, err)

	var got []*orderv1.PendingOrder
	pages, token := 0, ""
	for {
		resp, err := b.saga.ListStalePendingOrders(ctx, &orderv1.ListStalePendingOrdersRequest{
			OlderThan: durationpb.New(time.Minute), PageSize: 2, PageToken: token,
		})
		require.NoError(t, err, "the orchestrator itself, acting for nobody")
		got = append(got, resp.GetOrders()...)
		pages++
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	require.Equal(t, 2, pages)
	var ids []string
	for _, o := range got {
		ids = append(ids, o.GetOrderId())
	}
	require.Equal(t, []string{placed[0].GetOrderId(), placed[2].GetOrderId(), placed[3].GetOrderId()}, ids,
		"PENDING orders older than a minute, oldest first")
	first := got[0]
	require.Equal(t, user1, first.GetCustomerId())
	require.Equal(t, user1, first.GetPlacedBy())
	require.Equal(t, "tok_visa", first.GetPaymentMethod())
	require.True(t, proto.Equal(placed[0].GetTotal(), first.GetTotal()))
	require.Len(t, first.GetItems(), 2)
	require.Equal(t, "SKU-1", first.GetItems()[0].GetSku())
	require.Equal(t, int32(3), first.GetItems()[1].GetQuantity())
	require.WithinDuration(t, time.Now().Add(-10*time.Minute), first.GetCreateTime().AsTime(), time.Minute)

	t.Run("the saga acting for a user may list too", func(t *testing.T) {
		resp, err := b.saga.ListStalePendingOrders(b.asSaga(newKey()), &orderv1.ListStalePendingOrdersRequest{OlderThan: durationpb.New(9 * time.Minute)})
		require.NoError(t, err)
		require.Len(t, resp.GetOrders(), 1)
		require.Empty(t, resp.GetNextPageToken())
	})
	t.Run("users may not, not even operators", func(t *testing.T) {
		for _, c := range []context.Context{b.asUser(user1), b.asUser("ops-1", caller.RoleOperator), b.asUser("root", caller.RoleAdmin)} {
			_, err := b.client.ListStalePendingOrders(c, &orderv1.ListStalePendingOrdersRequest{OlderThan: durationpb.New(time.Minute)})
			requireStatus(t, err, codes.PermissionDenied, "allowed only for the orchestrator service")
		}
	})
	t.Run("bad requests name the field", func(t *testing.T) {
		for req, msg := range map[*orderv1.ListStalePendingOrdersRequest]string{
			{}: "older_than: required",
			{OlderThan: durationpb.New(500 * time.Millisecond)}:            "older_than: must be at least 1s",
			{OlderThan: durationpb.New(time.Minute), PageSize: 501}:        "page_size: must be between 0 and 500",
			{OlderThan: durationpb.New(time.Minute), PageToken: "garbage"}: "page_token: not a page token; use the one the previous response returned",
			{OlderThan: &durationpb.Duration{Seconds: 1, Nanos: -1}}:       "older_than: not a valid duration",
		} {
			_, err := b.saga.ListStalePendingOrders(ctx, req)
			requireStatus(t, err, codes.InvalidArgument, msg)
		}
	})
}
