package bootstrap

import (
	"context"
	"io"
	"io/fs"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/ratelimit"
	"github.com/goodgo/goodgo/platform/servicedb"
)

// ServiceConfig is the configuration that every binary serving users from
// its own database reads the same way: the order, payment and inventory
// services and the orchestrator. Every variable has a default that works on
// a developer machine.
type ServiceConfig struct {
	// Common: GRPC_ADDR, HTTP_ADDR, LOG_LEVEL, SHUTDOWN_TIMEOUT,
	// STARTUP_TIMEOUT, DRAIN_DELAY, GOODGO_MODE.
	config.Common
	// Security names the binary's certificate and the token issuer of its
	// users (TLS_*, AUTH_*; see config.LoadSecurity).
	Security config.Security
	// RateLimits are the per-user limits of each class of RPC
	// (RATE_LIMIT_READ, RATE_LIMIT_WRITE, RATE_LIMIT_UPDATE).
	RateLimits map[ratelimit.Class]ratelimit.Limit
	// Database is the binary's own PostgreSQL database: DATABASE_URL as
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
	// PIIKeys seal personal data at rest in the binary's own stores: its
	// tables and the replies kept in Redis for idempotent replay (PII_KEYS,
	// PII_ACTIVE_KEY). Every key variable has a public development default
	// in development mode only; production mode requires them all.
	PIIKeys *keyring.Keyring
}

// LoadServiceConfig reads ServiceConfig for service (its name, and the
// default database goodgo_<service>) with its default listen addresses.
// Problems are recorded in e.
func LoadServiceConfig(e *config.Env, service, grpcAddr, httpAddr string) ServiceConfig {
	common := config.LoadCommon(e, service, grpcAddr, httpAddr)
	return ServiceConfig{
		Common:      common,
		Security:    config.LoadSecurity(e, service, common.Dev, true),
		RateLimits:  config.RateLimits(e),
		Database:    config.LoadDatabase(e, service, common.Dev),
		Redis:       config.LoadRedis(e),
		Idempotency: config.LoadIdempotency(e),
		PIIKeys:     e.Keyring(config.PIIKeys, common.Dev),
	}
}

// OpenService opens the Kit of such a binary: Open, then its database,
// migrated with migrations (excess names what its role may not hold), and
// Redis with the idempotency guard of policies. On an error, what was
// opened is closed again.
func OpenService(ctx context.Context, cfg ServiceConfig, version string, migrations fs.FS, excess servicedb.Excess,
	policies map[string]idempotency.Policy, stdout io.Writer, lookup lifecycle.Lookup,
) (*Kit, error) {
	kit, err := Open(ctx, cfg.Common, cfg.Security, version, stdout, lookup)
	if err != nil {
		return nil, err
	}
	if err = kit.OpenDatabase(ctx, cfg.Database, migrations, excess); err == nil {
		err = kit.OpenRedis(ctx, cfg.Redis, cfg.Idempotency, cfg.PIIKeys, policies)
	}
	if err != nil {
		kit.Close(ctx)
		return nil, err
	}
	return kit, nil
}
