package grpcapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	"github.com/goodgo/goodgo/services/inventory/internal/app"
	"github.com/goodgo/goodgo/services/inventory/internal/grpcapi"
	"github.com/goodgo/goodgo/services/inventory/internal/postgres"
)

const redisAddr = "127.0.0.1:6379"

type testBundle struct {
	client inventoryv1.InventoryServiceClient
	pool   *pgxpool.Pool
	signer *optlock.Signer
	logs   *logBuffer
}

type setupOpts struct {
	redisAddr string // default redisAddr; an address nobody listens on simulates Redis down
	// lockTimeout, if set, is the lock_timeout of the service's connections:
	// a lock wait longer than that fails with SQLSTATE 55P03.
	lockTimeout time.Duration
}

// adminCaller is the caller allowed to run AdjustStock in these tests.
const adminCaller = "stock-admin"

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
		cfg, err := pgxpool.ParseConfig(url)
		require.NoError(t, err)
		cfg.MaxConns = 4
		cfg.ConnConfig.RuntimeParams["lock_timeout"] = strconv.FormatInt(o.lockTimeout.Milliseconds(), 10)
		pool, err = pgxpool.NewWithConfig(ctx, cfg)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
	}

	rdb := redis.NewClient(&redis.Options{Addr: o.redisAddr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	prefix := "test:inventory:" + rand.Text() + ":"
	t.Cleanup(func() { deleteKeys(t, rdb, prefix); _ = rdb.Close() })

	logs := &logBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	reg := prometheus.NewRegistry()
	w, err := outbox.NewWriter(nil, reg)
	require.NoError(t, err)
	signer, err := optlock.NewSigner("test", map[string][]byte{"test": bytes.Repeat([]byte{7}, 32)})
	require.NoError(t, err)
	locks, err := optlock.NewMetrics(reg)
	require.NoError(t, err)
	svc := app.New(postgres.NewRepository(pool, w), signer, locks, []string{adminCaller}, logger)
	guard, err := idempotency.New(idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix}),
		grpcapi.IdempotencyPolicies(), idempotency.Options{TTL: time.Minute}, reg, logger)
	require.NoError(t, err)

	srv, err := grpcserver.New(grpcserver.Config{Addr: "127.0.0.1:0", ShutdownTimeout: 5 * time.Second}, logger, reg,
		func(s *grpc.Server) { inventoryv1.RegisterInventoryServiceServer(s, grpcapi.New(svc, signer, logger)) },
		grpcserver.WithUnaryInterceptors(guard.UnaryServerInterceptor()))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})

	conn, err := grpcclient.Dial(srv.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return testBundle{client: inventoryv1.NewInventoryServiceClient(conn), pool: pool, signer: signer, logs: logs}
}

// withKey returns ctx carrying an idempotency key.
func withKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, idempotency.MetadataKey, key)
}

// asAdmin returns ctx carrying an idempotency key and the admin caller.
func asAdmin(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(withKey(ctx, key), caller.MetadataKey, adminCaller)
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

// logBuffer collects the JSON logs of concurrent handlers.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
