package main

import (
	"context"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
)

// TestRun starts the whole binary in-process (run with ports :0, a pgtest
// database holding the seeded catalog, the real Redis) and drives it with a
// real gRPC client and HTTP requests.
func TestRun(t *testing.T) {
	t.Parallel()
	dbURL, _ := pgtest.NewDatabase(t, db.Inventory)
	pki := authtest.New(t)
	env := pki.Env("inventory")
	maps.Copy(env, map[string]string{
		"GRPC_ADDR":              "127.0.0.1:0",
		"HTTP_ADDR":              "127.0.0.1:0",
		"DATABASE_URL":           pgtest.AsRole(dbURL, "goodgo_inventory"), // its own role; no MIGRATE_DATABASE_URL: the template is migrated
		"IDEMPOTENCY_TTL":        "1m",                                     // keys of this test expire soon after it
		"IDEMPOTENCY_KEY_PREFIX": "inventory-main-test:" + uuid.NewString() + ":",
		"STARTUP_TIMEOUT":        "10s",
	})
	cfg, err := loadConfig(servicetest.Lookup(env))
	require.NoError(t, err)
	ctx := context.Background()
	p := servicetest.Start(t, "inventory", func(ctx context.Context, stdout io.Writer) error {
		return run(ctx, cfg, stdout, servicetest.Lookup(env))
	})
	grpcAddr, httpAddr := p.GRPCAddr, p.HTTPAddr
	require.Equal(t, grpcAddr, p.Logs.WaitFor(t, "grpc server listening", "addr"))
	require.Equal(t, httpAddr, p.Logs.WaitFor(t, "ops http server listening", "addr"))

	// client is the orchestrator, acting for a customer; admin a user
	// with the admin role.
	conn := pki.DialAs("orchestrator", "inventory", grpcAddr)
	client := inventoryv1.NewInventoryServiceClient(conn)
	admin := inventoryv1.NewInventoryServiceClient(pki.Dial(grpcAddr))
	key := func() context.Context {
		forCustomer := caller.WithDelegation(ctx, caller.Delegation{User: uuid.NewString(), Permissions: []string{"orders.place"}})
		return metadata.AppendToOutgoingContext(forCustomer, idempotency.MetadataKey, uuid.NewString())
	}
	// The admin is a new user per run: the per-user rate limits live in
	// the shared Redis, so a fixed name would carry one run's calls into
	// the next (go test -count 2 failed with ResourceExhausted).
	adminToken := pki.Token("admin-"+uuid.NewString(), caller.RoleAdmin)
	adminKey := func() context.Context {
		return metadata.AppendToOutgoingContext(authtest.AsUser(ctx, adminToken), idempotency.MetadataKey, uuid.NewString())
	}

	t.Run("health is SERVING", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
		resp, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: inventoryv1.InventoryService_ServiceDesc.ServiceName})
		require.NoError(t, err)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())
	})

	t.Run("GetProducts returns the seeded catalog", func(t *testing.T) {
		resp, err := client.GetProducts(ctx, &inventoryv1.GetProductsRequest{})
		require.NoError(t, err)
		var skus []string
		for _, p := range resp.GetProducts() {
			skus = append(skus, p.GetSku())
		}
		require.Equal(t, []string{"SKU-CABLE", "SKU-DOCK", "SKU-HEADSET", "SKU-KEYBOARD", "SKU-LAPTOP",
			"SKU-LIMITED", "SKU-MONITOR", "SKU-MOUSE", "SKU-WEBCAM"}, skus)
	})

	t.Run("reserve, release and adjust with a version token", func(t *testing.T) {
		orderID := uuid.NewString()
		res, err := client.ReserveStock(key(), &inventoryv1.ReserveStockRequest{
			OrderId: orderID, Items: []*inventoryv1.ReservationItem{{Sku: "SKU-KEYBOARD", Quantity: 2}},
		})
		require.NoError(t, err)
		require.Equal(t, inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED, res.GetReservation().GetStatus())

		stock, err := client.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: "SKU-KEYBOARD"})
		require.NoError(t, err)
		require.EqualValues(t, 998, stock.GetProduct().GetAvailable())
		require.EqualValues(t, 2, stock.GetProduct().GetReserved())

		rel, err := client.ReleaseStock(key(), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
		require.NoError(t, err)
		require.Equal(t, inventoryv1.ReservationStatus_RESERVATION_STATUS_RELEASED, rel.GetReservation().GetStatus())

		// The release moved the stock: the token read before it is stale.
		_, err = admin.AdjustStock(adminKey(), &inventoryv1.AdjustStockRequest{
			Sku: "SKU-KEYBOARD", Available: 1500, VersionToken: stock.GetProduct().GetVersionToken(),
		})
		require.Equal(t, codes.Aborted, status.Code(err))

		stock, err = client.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: "SKU-KEYBOARD"})
		require.NoError(t, err)
		require.EqualValues(t, 1000, stock.GetProduct().GetAvailable())
		_, err = client.AdjustStock(key(), &inventoryv1.AdjustStockRequest{
			Sku: "SKU-KEYBOARD", Available: 1500, VersionToken: stock.GetProduct().GetVersionToken(),
		})
		require.Equal(t, codes.PermissionDenied, status.Code(err), "only admins adjust stock")
		adj, err := admin.AdjustStock(adminKey(), &inventoryv1.AdjustStockRequest{
			Sku: "SKU-KEYBOARD", Available: 1500, VersionToken: stock.GetProduct().GetVersionToken(), Reason: "delivery",
		})
		require.NoError(t, err)
		require.EqualValues(t, 1500, adj.GetProduct().GetAvailable())

		servicetest.RequireIdempotencyKeys(t, env["IDEMPOTENCY_KEY_PREFIX"])
	})

	t.Run("ops endpoints serve metrics, liveness and readiness", func(t *testing.T) {
		body := servicetest.HTTPGetOK(t, "http://"+httpAddr+"/metrics")
		for _, name := range []string{
			"grpc_server_handled_total", "idempotency_checks_total", "optimistic_lock_attempts_total",
			"outbox_events_total", "go_goroutines",
		} {
			require.Contains(t, body, name)
		}
		require.Equal(t, "ok\n", servicetest.HTTPGetOK(t, "http://"+httpAddr+"/healthz"))
		require.Equal(t, "ok\n", servicetest.HTTPGetOK(t, "http://"+httpAddr+"/readyz"))
	})

	p.Stop(t)
	require.Equal(t, "inventory", p.Logs.WaitFor(t, "inventory stopped", "service"))
}

func TestRunFailsWhenPostgresIsUnreachable(t *testing.T) {
	t.Parallel()
	env := authtest.New(t).Env("inventory")
	maps.Copy(env, map[string]string{
		"GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		// Nobody listens on port 1.
		"DATABASE_URL":    "postgres://postgres@127.0.0.1:1/goodgo_inventory?sslmode=disable",
		"STARTUP_TIMEOUT": "300ms",
	})
	cfg, err := loadConfig(servicetest.Lookup(env))
	require.NoError(t, err)
	err = run(context.Background(), cfg, io.Discard, servicetest.Lookup(env))
	require.ErrorContains(t, err, "postgres")
}

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	dev := map[string]string{"GOODGO_MODE": "development"}

	t.Run("defaults work on a developer machine, in development mode", func(t *testing.T) {
		cfg, err := loadConfig(servicetest.Lookup(dev))
		require.NoError(t, err)
		require.Equal(t, "inventory", cfg.Service)
		require.Equal(t, "127.0.0.1:50053", cfg.GRPCAddr)
		require.Equal(t, "127.0.0.1:9103", cfg.HTTPAddr)
		require.Equal(t, "postgres://goodgo_inventory@127.0.0.1:5432/goodgo_inventory?sslmode=disable", cfg.Database.URL)
		require.Equal(t, "postgres://postgres@127.0.0.1:5432/goodgo_inventory?sslmode=disable", cfg.Database.MigrateURL)
		require.Equal(t, "redis://127.0.0.1:6379/0", cfg.Redis.URL)
		require.Equal(t, 24*time.Hour, cfg.Idempotency.TTL)
		require.True(t, cfg.VersionTokens.Dev)
		require.Equal(t, "dev", cfg.OutboxKeys.ActiveKeyID())
		require.Equal(t, "dev", cfg.VersionTokens.Active)
		require.NotNil(t, cfg.OutboxKeys)
	})

	t.Run("real keys replace the development ones", func(t *testing.T) {
		k := "a:" + strings.Repeat("QUFB", 10) + "QUE=" // 32 bytes
		o := "o:" + strings.Repeat("QkJC", 10) + "QkI=" // 32 other bytes
		cfg, err := loadConfig(servicetest.Lookup(map[string]string{"GOODGO_MODE": "development", "VERSION_TOKEN_KEYS": k, "OUTBOX_KEYS": o}))
		require.NoError(t, err)
		require.False(t, cfg.VersionTokens.Dev)
		require.Equal(t, "a", cfg.VersionTokens.Active)
		require.Equal(t, "o", cfg.OutboxKeys.ActiveKeyID())
	})

	bad := map[string]map[string]string{
		"DATABASE_URL":             {"DATABASE_URL": "mysql://x"},
		"REDIS_URL":                {"REDIS_URL": "::"},
		"IDEMPOTENCY_TTL":          {"IDEMPOTENCY_TTL": "10ms"},
		"GRPC_ADDR":                {"GRPC_ADDR": "nope"},
		"VERSION_TOKEN_KEYS":       {"VERSION_TOKEN_KEYS": "k:c2hvcnQ="},
		"VERSION_TOKEN_ACTIVE_KEY": {"VERSION_TOKEN_ACTIVE_KEY": "other"},
		"OUTBOX_KEYS":              {"OUTBOX_KEYS": "no-colon"},
		"PII_KEYS":                 {"PII_KEYS": "p:c2hvcnQ="},
	}
	for name, env := range bad {
		t.Run(name+" is named when bad", func(t *testing.T) {
			env["GOODGO_MODE"] = "development"
			_, err := loadConfig(servicetest.Lookup(env))
			require.Error(t, err)
			require.True(t, strings.HasPrefix(err.Error(), name+": "), err.Error())
			require.NotContains(t, err.Error(), "\n", "one line for one bad variable")
		})
	}
}
