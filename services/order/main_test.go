package main

import (
	"context"
	"io"
	"maps"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
	"github.com/goodgo/goodgo/platform/tcpproxy"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	"github.com/goodgo/goodgo/services/order/internal/inventorytest"
)

// service is the binary's run() serving on free ports.
type service struct {
	*servicetest.Process
	pki *authtest.PKI
	env map[string]string
}

// startService runs the service as main does, on free ports, against an
// empty PostgreSQL database dbURL (run creates the schema), the local
// Redis and a fake inventory service holding products, with the
// credentials of a fresh PKI and the variables of extra; it waits until
// the service serves. stop ends it.
func startService(t *testing.T, dbURL string, extra map[string]string, products ...*inventoryv1.Product) *service {
	t.Helper()
	pki := authtest.New(t)
	inv := inventorytest.Start(t, pki, products...)
	env := pki.Env("order")
	readURL, _ := pgtest.NewDatabase(t, nil)
	maps.Copy(env, map[string]string{
		"GRPC_ADDR":            "127.0.0.1:0",
		"HTTP_ADDR":            "127.0.0.1:0",
		"DATABASE_URL":         pgtest.AsRole(dbURL, "goodgo_order"), // its own role; the owner (here the superuser) migrates
		"MIGRATE_DATABASE_URL": dbURL,
		// The read database beside it (migrated by the binary too); no
		// projector: these tests have no Kafka.
		"READ_DATABASE_URL":         pgtest.AsRole(readURL, "goodgo_order"),
		"MIGRATE_READ_DATABASE_URL": readURL,
		"PROJECTOR":                 "false",
		"INVENTORY_ADDR":            inv.Addr(),
		"IDEMPOTENCY_KEY_PREFIX":    "order-main-test:" + uuid.NewString() + ":",
		"OTEL_SDK_DISABLED":         "true",
		"STARTUP_TIMEOUT":           "10s",
	})
	maps.Copy(env, extra)
	cfg, err := loadConfig(servicetest.Lookup(env))
	require.NoError(t, err)
	return &service{pki: pki, env: env, Process: servicetest.Start(t, "order", func(ctx context.Context, stdout io.Writer) error {
		return run(ctx, cfg, stdout, servicetest.Lookup(env))
	})}
}

// stop cancels run and requires it to return nil.
func (s *service) stop(t *testing.T) { s.Stop(t) }

// TestRun starts the whole service as main does and uses it through real
// gRPC clients.
func TestRun(t *testing.T) {
	dbURL, pool := pgtest.NewDatabase(t, nil)
	svc := startService(t, dbURL, nil, inventorytest.Product("SKU-1", "Widget", "USD", 1999, 10))
	pki, ctx := svc.pki, context.Background()

	cc := pki.Dial(svc.GRPCAddr)
	client := orderv1.NewOrderServiceClient(cc)
	user7 := uuid.NewString()
	callAs := func(user string) context.Context {
		return metadata.AppendToOutgoingContext(authtest.AsUser(ctx, pki.Token(user)), idempotency.MetadataKey, uuid.NewString())
	}
	call := func() context.Context { return callAs(user7) }

	placed, err := client.PlaceOrder(call(), &orderv1.PlaceOrderRequest{
		CustomerId:      user7,
		Items:           []*orderv1.OrderItemInput{{Sku: "SKU-1", Quantity: 3}},
		ShippingAddress: &orderv1.Address{Name: "Ada", Line1: "1 Main St", City: "Boston", PostalCode: "02110", CountryCode: "US"},
		PaymentMethod:   "tok_visa",
	})
	require.NoError(t, err)
	require.Equal(t, int64(3*1999), placed.GetOrder().GetTotal().GetAmountMinor())

	got, err := client.GetOrder(call(), &orderv1.GetOrderRequest{OrderId: placed.GetOrder().GetOrderId()})
	require.NoError(t, err)
	require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_PENDING, got.GetOrder().GetStatus())
	_, err = client.GetOrder(callAs("user-8"), &orderv1.GetOrderRequest{OrderId: placed.GetOrder().GetOrderId()})
	require.Equal(t, codes.NotFound, status.Code(err), "another user's order does not exist for them")

	_, err = client.ConfirmOrder(call(), &orderv1.ConfirmOrderRequest{OrderId: placed.GetOrder().GetOrderId()})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "only the orchestrator confirms")
	saga := orderv1.NewOrderServiceClient(pki.DialAs("orchestrator", "order", svc.GRPCAddr))
	forUser7 := caller.WithDelegation(ctx, caller.Delegation{User: user7, Permissions: []string{"orders.place"}})
	confirmed, err := saga.ConfirmOrder(metadata.AppendToOutgoingContext(forUser7, idempotency.MetadataKey, uuid.NewString()),
		&orderv1.ConfirmOrderRequest{OrderId: placed.GetOrder().GetOrderId()})
	require.NoError(t, err)
	require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, confirmed.GetOrder().GetStatus())
	servicetest.RequireIdempotencyKeys(t, svc.env["IDEMPOTENCY_KEY_PREFIX"])

	var placedBy string
	require.NoError(t, pool.QueryRow(ctx, "SELECT placed_by FROM orders WHERE id = $1", placed.GetOrder().GetOrderId()).Scan(&placedBy))
	require.Equal(t, user7, placedBy)
	var events int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&events))
	require.Equal(t, 2, events)

	health := healthpb.NewHealthClient(cc)
	for _, service := range []string{"", orderv1.OrderService_ServiceDesc.ServiceName, orderv1.OrderQueryService_ServiceDesc.ServiceName} {
		h, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		require.NoError(t, err)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, h.GetStatus(), service)
	}
	require.Equal(t, int64(1), placed.GetOrder().GetVersion(), "writes return the order's version (read-your-writes)")
	// The read side is served from its own database (no projector here:
	// no Kafka, so the view stays empty).
	views := orderv1.NewOrderQueryServiceClient(cc)
	page, err := views.ListOrders(callAs(user7), &orderv1.ListOrdersRequest{CustomerId: user7})
	require.NoError(t, err)
	require.Empty(t, page.GetOrders())
	_, err = views.ListOrders(callAs(user7), &orderv1.ListOrdersRequest{CustomerId: "user-8"})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "a customer lists only their own orders")
	_, err = views.GetOrderView(callAs(user7), &orderv1.GetOrderViewRequest{OrderId: placed.GetOrder().GetOrderId(), MinOrderVersion: 1})
	require.Equal(t, codes.Unavailable, status.Code(err), "without a projector the view never reaches version 1")
	require.Contains(t, status.Convert(err).Message(), "1 behind")
	refl, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
	require.NoError(t, err)
	// The server may end the stream before the request is sent: Send then
	// returns io.EOF and Recv the status.
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		require.ErrorIs(t, err, io.EOF)
	}
	_, err = refl.Recv()
	require.Equal(t, codes.Unimplemented, status.Code(err), "no reflection in production mode")

	metrics := servicetest.HTTPGetOK(t, "http://"+svc.HTTPAddr+"/metrics")
	for _, name := range []string{"optimistic_lock_attempts_total", "idempotency_checks_total", "outbox_events_total", "grpc_server_handled_total"} {
		require.Contains(t, metrics, name)
	}
	require.Contains(t, servicetest.HTTPGetOK(t, "http://"+svc.HTTPAddr+"/readyz"), "ok")

	svc.stop(t)
}

// TestRateLimitsPerUser runs the service with a read limit of 3 calls a
// minute: a user's fourth read is refused with ResourceExhausted telling
// when to retry, counted; another user is not affected.
func TestRateLimitsPerUser(t *testing.T) {
	t.Parallel()
	dbURL, _ := pgtest.NewDatabase(t, nil)
	svc := startService(t, dbURL, map[string]string{"RATE_LIMIT_READ": "3/m"})
	pki, ctx := svc.pki, context.Background()

	client := orderv1.NewOrderServiceClient(pki.Dial(svc.GRPCAddr))
	alice, bob := authtest.AsUser(ctx, pki.Token(uuid.NewString())), authtest.AsUser(ctx, pki.Token(uuid.NewString()))
	read := func(ctx context.Context) error {
		_, err := client.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: uuid.NewString()})
		return err
	}
	for range 3 {
		require.Equal(t, codes.NotFound, status.Code(read(alice)), "within the limit")
	}
	err := read(alice)
	st := status.Convert(err)
	require.Equal(t, codes.ResourceExhausted, st.Code(), err)
	require.Contains(t, st.Message(), "rate limit of read calls exceeded")
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	require.NotNil(t, retry, "the refusal says when to retry")
	require.Greater(t, retry.GetRetryDelay().AsDuration(), time.Duration(0))
	require.LessOrEqual(t, retry.GetRetryDelay().AsDuration(), 20*time.Second, "one call's worth of a 3/m rate")
	require.Equal(t, codes.NotFound, status.Code(read(bob)), "limits are per user")
	require.Contains(t, servicetest.HTTPGetOK(t, "http://"+svc.HTTPAddr+"/metrics"),
		`rate_limit_refusals_total{class="read",method="/goodgo.order.v1.OrderService/GetOrder"} 1`)
	svc.stop(t)
}

// TestReadyWithoutRedis checks that a Redis outage does not take the
// service out of rotation: PlaceOrder, ConfirmOrder and CancelOrder run
// without Redis (the database guards them), so /readyz answers on
// PostgreSQL alone. Redis is reached through a proxy the test cuts.
func TestReadyWithoutRedis(t *testing.T) {
	t.Parallel()
	dbURL, _ := pgtest.NewDatabase(t, nil)
	redisProxy := tcpproxy.Start(t, "127.0.0.1:6379")
	svc := startService(t, dbURL, map[string]string{"REDIS_URL": "redis://" + redisProxy.Addr() + "/0"},
		inventorytest.Product("SKU-1", "Widget", "USD", 1999, 10))
	pki, ctx := svc.pki, context.Background()
	require.Contains(t, servicetest.HTTPGetOK(t, "http://"+svc.HTTPAddr+"/readyz"), "ok")

	redisProxy.Cut() // Redis is gone
	require.Contains(t, servicetest.HTTPGetOK(t, "http://"+svc.HTTPAddr+"/readyz"), "ok", "still ready without Redis")
	user := uuid.NewString()
	placed, err := orderv1.NewOrderServiceClient(pki.Dial(svc.GRPCAddr)).PlaceOrder(
		metadata.AppendToOutgoingContext(authtest.AsUser(ctx, pki.Token(user)), idempotency.MetadataKey, uuid.NewString()),
		&orderv1.PlaceOrderRequest{
			CustomerId:      user,
			Items:           []*orderv1.OrderItemInput{{Sku: "SKU-1", Quantity: 1}},
			ShippingAddress: &orderv1.Address{Name: "Ada", Line1: "1 Main St", City: "Boston", PostalCode: "02110", CountryCode: "US"},
			PaymentMethod:   "tok_visa",
		})
	require.NoError(t, err, "and serving orders")
	require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_PENDING, placed.GetOrder().GetStatus())
	svc.stop(t)
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()

	t.Run("the defaults work locally in development mode", func(t *testing.T) {
		t.Parallel()
		cfg, err := loadConfig(servicetest.Lookup(map[string]string{"GOODGO_MODE": "development"}))
		require.NoError(t, err)
		require.True(t, cfg.Dev)
		require.Equal(t, ".dev/pki/order.crt", cfg.Security.TLS.Cert)
		require.Equal(t, ".dev/jwt/jwks.json", cfg.Security.Tokens.JWKSFile)
		require.Equal(t, "127.0.0.1:50051", cfg.GRPCAddr)
		require.Equal(t, "127.0.0.1:9101", cfg.HTTPAddr)
		require.Equal(t, "127.0.0.1:50053", cfg.InventoryAddr)
		require.Equal(t, 24*time.Hour, cfg.Idempotency.TTL)
		require.True(t, cfg.VersionTokens.Dev)
		require.Equal(t, "dev", cfg.VersionTokens.Active)
		require.Equal(t, "dev", cfg.OutboxKeys.ActiveKeyID())
		require.Equal(t, "dev-pii", cfg.PIIKeys.ActiveKeyID())
	})

	t.Run("production mode names every missing credential and key", func(t *testing.T) {
		t.Parallel()
		_, err := loadConfig(servicetest.Lookup(nil))
		require.Error(t, err)
		for _, name := range []string{"TLS_CERT_FILE: required", "TLS_KEY_FILE: required", "TLS_CA_FILE: required",
			"AUTH_ISSUER: required", "AUTH_AUDIENCE: required", "AUTH_JWKS_URL: required",
			"VERSION_TOKEN_KEYS: required", "OUTBOX_KEYS: required", "PII_KEYS: required"} {
			require.Contains(t, err.Error(), name)
		}
	})

	t.Run("development mode is refused inside Kubernetes", func(t *testing.T) {
		t.Parallel()
		_, err := loadConfig(servicetest.Lookup(map[string]string{"GOODGO_MODE": "development", "KUBERNETES_SERVICE_HOST": "10.0.0.1"}))
		require.ErrorContains(t, err, "GOODGO_MODE: development mode is refused inside Kubernetes")
	})

	t.Run("several keys need an active one", func(t *testing.T) {
		t.Parallel()
		k := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
		cfg, err := loadConfig(servicetest.Lookup(map[string]string{
			"GOODGO_MODE":        "development",
			"VERSION_TOKEN_KEYS": "a:" + k + ",b:" + k, "VERSION_TOKEN_ACTIVE_KEY": "b",
			"OUTBOX_KEYS": "x:QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=", "REDIS_ADDRS": "10.0.0.1:7000, 10.0.0.2:7000",
		}))
		require.NoError(t, err)
		require.Equal(t, "b", cfg.VersionTokens.Active)
		require.Len(t, cfg.VersionTokens.Keys, 2)
		require.Equal(t, "x", cfg.OutboxKeys.ActiveKeyID())
		require.Equal(t, []string{"10.0.0.1:7000", "10.0.0.2:7000"}, cfg.Redis.Addrs)
	})

	t.Run("every bad variable is named", func(t *testing.T) {
		t.Parallel()
		_, err := loadConfig(servicetest.Lookup(map[string]string{
			"GOODGO_MODE":        "development",
			"GRPC_ADDR":          "nowhere",
			"DATABASE_URL":       "mysql://x",
			"IDEMPOTENCY_TTL":    "soon",
			"VERSION_TOKEN_KEYS": "a:c2hvcnQ=",
			"OUTBOX_KEYS":        "a:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=,b:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		}))
		require.Error(t, err)
		msg := err.Error()
		for _, name := range []string{"GRPC_ADDR: ", "DATABASE_URL: ", "IDEMPOTENCY_TTL: ", "VERSION_TOKEN_KEYS: ", "OUTBOX_ACTIVE_KEY: "} {
			require.Contains(t, "\n"+msg, "\n"+name, "in:\n%s", msg)
		}
		require.NotContains(t, msg, "MDEyMzQ1", "no key material in errors")
	})
}
