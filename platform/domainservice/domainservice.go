// Package domainservice builds what the order, payment and inventory
// binaries share. Each owns a PostgreSQL database with an outbox, proves
// its identity with its mTLS certificate and checks its callers' against
// its authorization policies, limits each user's calls, guards its
// mutating RPCs with idempotency keys in Redis, signs version tokens, and
// serves gRPC beside the ops HTTP endpoints. A binary's run loads Config
// (LoadConfig), opens a Kit, wires its own use cases from the Kit's parts,
// and calls Serve.
package domainservice

import (
	"context"
	"io"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/ratelimit"
	"github.com/goodgo/goodgo/platform/redisclient"
	"github.com/goodgo/goodgo/platform/security"
	"github.com/goodgo/goodgo/platform/servicedb"
	"github.com/goodgo/goodgo/platform/telemetry"
)

// Config is the part of a domain service's configuration that every one of
// them reads the same way. Every variable has a default that works on a
// developer machine.
type Config struct {
	// Common: GRPC_ADDR, HTTP_ADDR, LOG_LEVEL, SHUTDOWN_TIMEOUT,
	// STARTUP_TIMEOUT, DRAIN_DELAY.
	config.Common
	// Security names the binary's certificate and the token issuer
	// (TLS_*, AUTH_*; see config.LoadSecurity).
	Security config.Security
	// RateLimits are the per-user limits of each class of RPC
	// (RATE_LIMIT_READ, RATE_LIMIT_WRITE, RATE_LIMIT_UPDATE).
	RateLimits map[ratelimit.Class]ratelimit.Limit

	// Database is the service's own PostgreSQL database: DATABASE_URL as
	// its own role goodgo_<service> (default goodgo_<service> on the local
	// server), and MIGRATE_DATABASE_URL as the owner that creates and
	// migrates it at start (unset in production: a migration job does, see
	// servicedb).
	Database config.Database
	// Redis holds the idempotency keys (REDIS_URL, REDIS_ADDRS).
	Redis config.Redis
	// Idempotency tunes the idempotency keys (IDEMPOTENCY_TTL,
	// IDEMPOTENCY_KEY_PREFIX).
	Idempotency config.Idempotency
	// VersionTokens sign and verify version tokens, by key id
	// (VERSION_TOKEN_KEYS "kid:base64,…", keys of at least 32 bytes;
	// VERSION_TOKEN_ACTIVE_KEY signs, default the only key id).
	VersionTokens config.KeySet
	// OutboxKeys encrypt PII event payloads (OUTBOX_KEYS "kid:base64,…",
	// 32-byte AES-256 keys; OUTBOX_ACTIVE_KEY, default the only key id).
	// Services whose events carry no PII configure them all the same, so
	// that a future PII event needs no new settings.
	OutboxKeys *keyring.Keyring
	// PIIKeys seal personal data at rest in the service's own stores: its
	// tables and the replies kept in Redis for idempotent replay (PII_KEYS,
	// PII_ACTIVE_KEY). Every key variable has a public development default
	// in development mode only; production mode requires them all.
	PIIKeys *keyring.Keyring
}

// LoadConfig reads Config for service (its name, and the default
// database goodgo_<service>) with the service's default listen addresses.
// Problems are recorded in e.
func LoadConfig(e *config.Env, service, grpcAddr, httpAddr string) Config {
	common := config.LoadCommon(e, service, grpcAddr, httpAddr)
	c := Config{
		Common:        common,
		Security:      config.LoadSecurity(e, service, common.Dev, true),
		RateLimits:    config.RateLimits(e),
		Database:      config.LoadDatabase(e, service, common.Dev),
		Redis:         config.LoadRedis(e),
		Idempotency:   config.LoadIdempotency(e),
		VersionTokens: e.Keys(config.VersionTokenKeys, common.Dev),
		OutboxKeys:    e.Keyring(config.OutboxKeys, common.Dev),
		PIIKeys:       e.Keyring(config.PIIKeys, common.Dev),
	}
	return c
}

// Kit is a domain service's shared parts, for its use cases: open with
// Open, serve with Serve, release with Close.
type Kit struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Pool is the service's database, migrated.
	Pool *pgxpool.Pool
	// Signer signs and verifies the version tokens clients hold.
	Signer *optlock.Signer
	// Locks counts optimistic-locking attempts, conflicts and retries.
	Locks *optlock.Metrics
	// Outbox appends events in the caller's transaction.
	Outbox *outbox.Writer
	// Security is the service's certificate and verifiers; Dial peers
	// with it.
	Security *security.Kit
	// Guard enforces idempotency keys (and forgets a user's, on logout).
	Guard *idempotency.Guard

	cfg      Config
	version  string
	tel      *telemetry.Telemetry
	redis    redis.UniversalClient
	policies authz.Policies
}

// API is what a service declares about its RPCs: who may call each one
// (every registered method needs a policy) and how each mutating one is
// guarded by idempotency keys.
type API struct {
	Access      authz.Policies
	Idempotency map[string]idempotency.Policy
}

// Open sets up logging (JSON to stdout) and telemetry (lookup supplies the
// OTEL_* variables), loads the service's credentials, creates and migrates
// the database with migrations, connects to Redis and builds the
// idempotency guard with the service's per-RPC policies, the version-token
// signer and the outbox writer. On an error, what was opened is closed
// again.
func Open(ctx context.Context, cfg Config, version string, migrations fs.FS, api API,
	stdout io.Writer, lookup lifecycle.Lookup,
) (k *Kit, err error) {
	k = &Kit{cfg: cfg, version: version, policies: api.Access, Logger: telemetry.NewLogger(stdout, cfg.Service, cfg.LogLevel)}
	defer func() {
		if err != nil {
			k.Close(ctx)
			k = nil
		}
	}()
	if k.tel, err = telemetry.Setup(ctx, cfg.Service, version, lookup); err != nil {
		return k, err
	}
	k.Registry = k.tel.Registry
	if k.Security, err = security.Open(ctx, cfg.Security, cfg.Service, k.Logger); err != nil {
		return k, err
	}
	// Its own role may append to the outbox but not read it: the relay's.
	if k.Pool, err = servicedb.Open(ctx, cfg.Service, cfg.Dev, cfg.Database, migrations, outbox.WriterExcess, k.Logger, cfg.StartupTimeout); err != nil {
		return k, err
	}
	if k.redis, err = redisclient.Connect(ctx, cfg.Redis, k.Logger, cfg.StartupTimeout); err != nil {
		return k, err
	}
	store, err := idempotency.NewRedisStore(k.redis, idempotency.RedisOptions{Prefix: cfg.Idempotency.Prefix, Service: cfg.Service, Keys: cfg.PIIKeys})
	if err != nil {
		return k, err
	}
	if k.Guard, err = idempotency.New(store, api.Idempotency, idempotency.Options{TTL: cfg.Idempotency.TTL}, k.Registry, k.Logger); err != nil {
		return k, err
	}
	if k.Signer, err = optlock.NewSigner(cfg.VersionTokens.Active, cfg.VersionTokens.Keys); err != nil {
		return k, err
	}
	if k.Locks, err = optlock.NewMetrics(k.Registry); err != nil {
		return k, err
	}
	if k.Outbox, err = outbox.NewWriter(cfg.OutboxKeys, k.Registry); err != nil {
		return k, err
	}
	return k, nil
}

// Serve serves the services register adds, behind the idempotency guard,
// and the ops HTTP endpoints until ctx is cancelled; then both drain and
// Serve returns nil. It returns an error when a server cannot start or
// stops on its own. Losing PostgreSQL or Redis while serving stops
// nothing: calls that need them fail until they are back.
//
// Ready means PostgreSQL answers. Redis only makes the service degraded
// (/readyz lists it and stays 200), on purpose: while it is down, the RPCs
// each service marks RedisDownSafe (their database constraints guard them)
// keep running and only the others answer Unavailable, so a Redis outage
// must not take every replica out of rotation at once. peers are the
// service's further checks, such as its neighbours (opshttp.GRPCHealth),
// usually Optional.
func (k *Kit) Serve(ctx context.Context, register func(grpc.ServiceRegistrar), peers ...opshttp.Check) error {
	cfg := k.cfg
	limiter, err := ratelimit.New(k.redis, cfg.RateLimits, "", k.Registry, k.Logger)
	if err != nil {
		return err
	}
	srvCfg, err := k.Security.Secure(grpcserver.Config{Addr: cfg.GRPCAddr, ShutdownTimeout: cfg.ShutdownTimeout, DrainDelay: cfg.DrainDelay},
		k.policies, limiter, k.Registry, k.Logger)
	if err != nil {
		return err
	}
	grpcServer, err := grpcserver.New(srvCfg, k.Logger, k.Registry, register, grpcserver.WithUnaryInterceptors(k.Guard.UnaryServerInterceptor()))
	if err != nil {
		return err
	}
	checks := append([]opshttp.Check{
		{Name: "postgres", Fn: k.Pool.Ping},
		{Name: "redis", Optional: true, Fn: func(ctx context.Context) error { return k.redis.Ping(ctx).Err() }},
	}, peers...)
	ops, err := opshttp.New(cfg.HTTPAddr, k.Registry, opshttp.Checks(checks...), k.Logger)
	if err != nil {
		return err
	}
	if cfg.Profiles {
		ops.ServeProfiles()
	}
	k.Logger.InfoContext(ctx, cfg.Service+" service started",
		"grpc_addr", grpcServer.Addr().String(), "http_addr", ops.Addr().String(), "version", k.version)
	if err := lifecycle.Serve(ctx, grpcServer.Serve, ops.Serve); err != nil {
		return err
	}
	k.Logger.InfoContext(ctx, cfg.Service+" service stopped")
	return nil
}

// Close closes Redis and the database, then flushes the telemetry: last,
// so that the final spans are exported.
func (k *Kit) Close(ctx context.Context) {
	k.Security.Close(ctx)
	if k.redis != nil {
		_ = k.redis.Close()
	}
	if k.Pool != nil {
		k.Pool.Close()
	}
	if k.tel != nil {
		k.tel.Close(ctx, k.Logger)
	}
}
