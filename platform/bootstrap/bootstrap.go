// Package bootstrap is how every GoodGo binary starts and stops, in one
// shape: Open sets up logging (JSON to stdout), telemetry and the binary's
// identity (its mTLS certificate and token verifiers); OpenDatabase and
// OpenRedis add the parts a binary needs (each closed by Close and checked
// by readiness); the binary wires its own parts from the Kit's, and Serve
// serves its gRPC services and the ops HTTP endpoints beside its
// background work until the context is cancelled. OpenDomain opens what
// the order, payment and inventory services share on top.
package bootstrap

import (
	"context"
	"io"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/ratelimit"
	"github.com/goodgo/goodgo/platform/redisclient"
	"github.com/goodgo/goodgo/platform/security"
	"github.com/goodgo/goodgo/platform/servicedb"
	"github.com/goodgo/goodgo/platform/telemetry"
)

// Kit is a binary's shared parts: open with Open (and OpenDatabase,
// OpenRedis), serve with Serve, release with Close.
type Kit struct {
	Logger         *slog.Logger
	Registry       *prometheus.Registry
	TracerProvider trace.TracerProvider
	// Security is the binary's certificate and verifiers.
	Security *security.Kit
	// Pool is the binary's own database, migrated (OpenDatabase).
	Pool *pgxpool.Pool
	// Guard enforces idempotency keys (OpenRedis).
	Guard *idempotency.Guard

	common  config.Common
	version string
	tel     *telemetry.Telemetry
	redis   redis.UniversalClient
	checks  []opshttp.Check
	closers []func()
}

// Open sets up logging (JSON to stdout) and telemetry (lookup supplies the
// OTEL_* variables) and loads the binary's credentials. On an error, what
// was opened is closed again.
func Open(ctx context.Context, common config.Common, sec config.Security, version string, stdout io.Writer, lookup lifecycle.Lookup) (*Kit, error) {
	k := &Kit{common: common, version: version, Logger: logs.NewLogger(stdout, common.Service, common.LogLevel)}
	var err error
	if k.tel, err = telemetry.Setup(ctx, common.Service, version, lookup); err != nil {
		return nil, err
	}
	k.Registry, k.TracerProvider = k.tel.Registry, k.tel.TracerProvider
	if k.Security, err = security.Open(ctx, sec, common.Service, k.Logger); err != nil {
		k.Close(ctx)
		return nil, err
	}
	return k, nil
}

// OpenDatabase creates and migrates the binary's own database with
// migrations (servicedb.Open: excess names what its role may not hold) and
// sets Pool. Ready then needs PostgreSQL to answer.
func (k *Kit) OpenDatabase(ctx context.Context, db config.Database, migrations fs.FS, excess servicedb.Excess) error {
	pool, err := servicedb.Open(ctx, k.common.Service, k.common.Dev, db, migrations, excess, k.Logger, k.common.StartupTimeout)
	if err != nil {
		return err
	}
	k.Pool = pool
	k.closers = append(k.closers, pool.Close)
	k.checks = append(k.checks, opshttp.Check{Name: "postgres", Fn: pool.Ping})
	return nil
}

// OpenRedis connects to Redis and sets Guard, which keeps the replies of
// the RPCs policies name under idempotency keys there, sealed with keys.
// Serve then limits each user's calls there too. Redis only makes the
// binary degraded (/readyz lists it and stays 200), on purpose: while it
// is down, the RPCs marked RedisDownSafe keep running and only the others
// answer Unavailable, so a Redis outage must not take every replica out of
// rotation at once.
func (k *Kit) OpenRedis(ctx context.Context, cfg config.Redis, idem config.Idempotency, keys *keyring.Keyring, policies map[string]idempotency.Policy) error {
	rdb, err := redisclient.Connect(ctx, cfg, k.Logger, k.common.StartupTimeout)
	if err != nil {
		return err
	}
	k.redis = rdb
	k.closers = append(k.closers, func() { _ = rdb.Close() })
	k.checks = append(k.checks, opshttp.Check{Name: "redis", Optional: true, Fn: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }})
	store, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: idem.Prefix, Service: k.common.Service, Keys: keys})
	if err != nil {
		return err
	}
	k.Guard, err = idempotency.New(store, policies, idempotency.Options{TTL: idem.TTL}, k.Registry, k.Logger)
	return err
}

// Dial returns a connection to service at addr, checked to be the service
// meant (its certificate's SPIFFE ID), closed by Close. It does not
// connect: a neighbour that is not up yet only makes the first calls fail.
func (k *Kit) Dial(addr, service string) (*grpc.ClientConn, error) {
	conn, err := k.Security.Dial(addr, service)
	if err != nil {
		return nil, err
	}
	k.closers = append(k.closers, func() { _ = conn.Close() })
	return conn, nil
}

// Server is what a binary serves.
type Server struct {
	// Register adds the binary's gRPC services.
	Register func(grpc.ServiceRegistrar)
	// Policies say who may call each RPC; every registered method needs
	// one.
	Policies authz.Policies
	// RateLimits limit each user's calls, in Redis (OpenRedis); nil: no
	// limits.
	RateLimits map[ratelimit.Class]ratelimit.Limit
	// Checks are the binary's readiness checks beyond those of the parts
	// the Kit opened, such as its neighbours (opshttp.GRPCHealth).
	Checks []opshttp.Check
	// Run is the binary's background work (consumers, relays), run beside
	// the servers until ctx is cancelled: one of them returning stops the
	// binary.
	Run []func(context.Context) error
	// Attrs are further attributes of the "<service> started" log line.
	Attrs []any
}

// Serve serves s behind the idempotency guard (when OpenRedis set one)
// and the ops HTTP endpoints until ctx is cancelled; then everything
// drains and Serve returns nil. It returns an error when a server cannot
// start, or a server or s.Run stops on its own. Losing PostgreSQL or Redis
// while serving stops nothing: calls that need them fail until they are
// back.
func (k *Kit) Serve(ctx context.Context, s Server) error {
	var limiter authz.Limiter
	if s.RateLimits != nil && k.redis != nil {
		l, err := ratelimit.New(k.redis, s.RateLimits, "", k.Registry, k.Logger)
		if err != nil {
			return err
		}
		limiter = l
	}
	srvCfg, err := k.Security.Secure(grpcserver.Config{Addr: k.common.GRPCAddr, ShutdownTimeout: k.common.ShutdownTimeout, DrainDelay: k.common.DrainDelay},
		s.Policies, limiter, k.Registry, k.Logger)
	if err != nil {
		return err
	}
	var opts []grpcserver.Option
	if k.Guard != nil {
		opts = append(opts, grpcserver.WithUnaryInterceptors(k.Guard.UnaryServerInterceptor()))
	}
	grpcServer, err := grpcserver.New(srvCfg, k.Logger, k.Registry, s.Register, opts...)
	if err != nil {
		return err
	}
	ops, err := opshttp.New(k.common.HTTPAddr, k.Registry, opshttp.Checks(append(k.checks, s.Checks...)...), k.Logger)
	if err != nil {
		return err
	}
	if k.common.Profiles {
		ops.ServeProfiles()
	}
	service := k.common.Service
	k.Logger.InfoContext(ctx, service+" started", append([]any{
		"grpc_addr", grpcServer.Addr().String(), "http_addr", ops.Addr().String(), "version", k.version,
	}, s.Attrs...)...)
	if err := lifecycle.Serve(ctx, append([]func(context.Context) error{grpcServer.Serve, ops.Serve}, s.Run...)...); err != nil {
		return err
	}
	k.Logger.InfoContext(ctx, service+" stopped")
	return nil
}

// Close closes what Open, OpenDatabase, OpenRedis and Dial opened, in
// reverse, then flushes the telemetry: last, so that the final spans are
// exported.
func (k *Kit) Close(ctx context.Context) {
	for i := len(k.closers) - 1; i >= 0; i-- {
		k.closers[i]()
	}
	k.Security.Close(ctx)
	if k.tel != nil {
		k.tel.Close(ctx, k.Logger)
	}
}
