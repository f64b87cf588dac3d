package grpcapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	"github.com/goodgo/goodgo/services/inventory/internal/app"
	"github.com/goodgo/goodgo/services/inventory/internal/grpcapi"
	"github.com/goodgo/goodgo/services/inventory/internal/postgres"
)

const redisAddr = "127.0.0.1:6379"

// testBundle serves the inventory API. client is the orchestrator's
// connection (withKey's calls act for customer), user an end user's (its
// calls carry the token of asAdmin or asUser); pki makes credentials.
type testBundle struct {
	client     inventoryv1.InventoryServiceClient
	user       inventoryv1.InventoryServiceClient
	pki        *authtest.PKI
	addr       string
	adminToken string
	pool       *pgxpool.Pool
	signer     *optlock.Signer
	logs       *servicetest.Logs
	// rdb and idemKeys reach the guard's records: idemKeys + the hashed
	// key (idempotency.Key) is a record's Redis key.
	rdb      *redis.Client
	idemKeys string
	// reg holds the service's metrics.
	reg *prometheus.Registry
}

type setupOpts struct {
	redisAddr string // default redisAddr; an address nobody listens on simulates Redis down
	// lockTimeout, if set, is the lock_timeout of the service's connections:
	// a lock wait longer than that fails with SQLSTATE 55P03.
	lockTimeout time.Duration
}

// customer is the user the tests' saga calls act for.
const customer = "0190a0c4-52f7-7b8e-9d1e-4c3b2a190a0c"

// setup runs the service's gRPC stack (grpcserver + idempotency guard on
// real Redis + app + repository on a fresh PostgreSQL database) and returns
// a real client to it.
func setup(t testing.TB, opts ...setupOpts) testBundle {
	t.Helper()
	var o setupOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.redisAddr == "" {
		o.redisAddr = redisAddr
	}
	ctx, cancel := context.WithCancel(context.Background())

	// pgtest's pool (4 connections) is enough for the concurrency tests to
	// contend on row locks, and small enough for the whole workspace's
	// parallel tests to stay under PostgreSQL's max_connections.
	url, pool := pgtest.NewDatabase(t, db.Inventory)
	if o.lockTimeout > 0 {
		pool = pgtest.LockTimeoutPool(t, url, o.lockTimeout)
	}

	rdb := redis.NewClient(&redis.Options{Addr: o.redisAddr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	prefix := "test:inventory:" + rand.Text() + ":"
	t.Cleanup(func() { deleteKeys(t, rdb, prefix); _ = rdb.Close() })

	logs := &servicetest.Logs{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	reg := prometheus.NewRegistry()
	w, err := outbox.NewWriter(nil, reg)
	require.NoError(t, err)
	signer, err := optlock.NewSigner("test", map[string][]byte{"test": bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	locks, err := optlock.NewMetrics(reg)
	require.NoError(t, err)
	var (
		repoOpts []postgres.Option
		hot      *optlock.Contention
	)
	if *contentionMode == "adaptive" {
		hot, err = optlock.NewContention(event.AggregateProduct, optlock.ContentionOptions{}, reg)
		require.NoError(t, err)
		repoOpts = append(repoOpts, postgres.WithContention(hot))
	}
	svc := app.New(postgres.NewRepository(pool, w, repoOpts...), signer, locks, hot, logger)
	pki := authtest.New(t)
	store, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix, Service: "inventory", Keys: pki.Keyring("inventory", config.PIIKeys)})
	require.NoError(t, err)
	guard, err := idempotency.New(store, grpcapi.IdempotencyPolicies(), idempotency.Options{TTL: time.Minute}, reg, logger)
	require.NoError(t, err)

	cfg := grpcserver.Config{Addr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second}
	cfg.Authorizer, cfg.Credentials = pki.Authorizer("inventory", grpcapi.Policies())
	srv, err := grpcserver.New(cfg, logger, reg,
		func(s grpc.ServiceRegistrar) {
			inventoryv1.RegisterInventoryServiceServer(s, grpcapi.New(svc, signer, logger))
		},
		grpcserver.WithUnaryInterceptors(guard.UnaryServerInterceptor()))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	addr := srv.Addr().String()
	return testBundle{
		client:     inventoryv1.NewInventoryServiceClient(pki.DialAs("orchestrator", "inventory", addr)),
		user:       inventoryv1.NewInventoryServiceClient(pki.Dial(addr)),
		pki:        pki,
		addr:       addr,
		adminToken: pki.Token("root", caller.RoleAdmin),
		pool:       pool,
		signer:     signer,
		logs:       logs,
		rdb:        rdb,
		idemKeys:   prefix + "inventory:",
		reg:        reg,
	}
}

// forCustomer returns ctx whose calls on b.client act for customer.
func forCustomer(ctx context.Context) context.Context {
	return forUser(ctx, customer)
}

// forUser returns ctx whose calls on b.client act for user.
func forUser(ctx context.Context, user string) context.Context {
	return caller.WithDelegation(ctx, caller.Delegation{User: user, Permissions: []string{grpcapi.PermPlaceOrder}})
}

// withKey returns ctx carrying an idempotency key, acting for customer.
func withKey(ctx context.Context, key string) context.Context {
	return withKeyFor(ctx, key, customer)
}

// withKeyFor returns ctx carrying an idempotency key, acting for user.
func withKeyFor(ctx context.Context, key, user string) context.Context {
	return metadata.AppendToOutgoingContext(forUser(ctx, user), idempotency.MetadataKey, key)
}

// asAdmin returns ctx carrying an idempotency key and an admin's token, for
// calls on b.user.
func (b testBundle) asAdmin(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(authtest.AsUser(ctx, b.adminToken), idempotency.MetadataKey, key)
}

// asUser returns ctx carrying an idempotency key and the token of user
// with roles, for calls on b.user.
func (b testBundle) asUser(ctx context.Context, key, user string, roles ...string) context.Context {
	return metadata.AppendToOutgoingContext(authtest.AsUser(ctx, b.pki.Token(user, roles...)), idempotency.MetadataKey, key)
}

func deleteKeys(t testing.TB, rdb *redis.Client, prefix string) {
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
	for iter.Next(ctx) {
		_ = rdb.Del(ctx, iter.Val()).Err()
	}
}

func (b testBundle) addProduct(t testing.TB, sku string, available int64) string {
	t.Helper()
	_, err := b.pool.Exec(context.Background(),
		`INSERT INTO products (sku, name, currency_code, unit_price_minor, available) VALUES ($1, $1, 'EUR', 250, $2)`,
		sku, available)
	require.NoError(t, err)
	return sku
}

func (b testBundle) stock(t testing.TB, sku string) (available, reserved int64) {
	t.Helper()
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT available, reserved FROM products WHERE sku = $1`, sku).Scan(&available, &reserved))
	return available, reserved
}

func (b testBundle) count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}
