package bootstrap

import (
	"context"
	"io"
	"io/fs"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/ratelimit"
)

// DomainConfig is the part of the order, payment and inventory services'
// configuration that each of them reads the same way. Every variable has a
// default that works on a developer machine.
type DomainConfig struct {
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

// LoadDomainConfig reads DomainConfig for service (its name, and the
// default database goodgo_<service>) with the service's default listen
// addresses. Problems are recorded in e.
func LoadDomainConfig(e *config.Env, service, grpcAddr, httpAddr string) DomainConfig {
	common := config.LoadCommon(e, service, grpcAddr, httpAddr)
	return DomainConfig{
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
}

// Domain is the Kit of the order, payment and inventory services, each of
// which owns a PostgreSQL database with an outbox, guards its mutating RPCs
// with idempotency keys in Redis and signs version tokens.
type Domain struct {
	*Kit
	// Signer signs and verifies the version tokens clients hold.
	Signer *optlock.Signer
	// Locks counts optimistic-locking attempts, conflicts and retries.
	Locks *optlock.Metrics
	// Outbox appends events in the caller's transaction.
	Outbox *outbox.Writer
}

// OpenDomain opens the Kit of a domain service: its database, migrated with
// migrations (its role may append to the outbox but not read it: the
// relay's), Redis with the idempotency guard of policies, the version-token
// signer and the outbox writer. On an error, what was opened is closed
// again.
func OpenDomain(ctx context.Context, cfg DomainConfig, version string, migrations fs.FS, policies map[string]idempotency.Policy,
	stdout io.Writer, lookup lifecycle.Lookup,
) (d *Domain, err error) {
	kit, err := Open(ctx, cfg.Common, cfg.Security, version, stdout, lookup)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			kit.Close(ctx)
			d = nil
		}
	}()
	d = &Domain{Kit: kit}
	if err = kit.OpenDatabase(ctx, cfg.Database, migrations, outbox.WriterExcess); err != nil {
		return d, err
	}
	if err = kit.OpenRedis(ctx, cfg.Redis, cfg.Idempotency, cfg.PIIKeys, policies); err != nil {
		return d, err
	}
	if d.Signer, err = optlock.NewSigner(cfg.VersionTokens.Active, cfg.VersionTokens.Keys); err != nil {
		return d, err
	}
	if d.Locks, err = optlock.NewMetrics(kit.Registry); err != nil {
		return d, err
	}
	d.Outbox, err = outbox.NewWriter(cfg.OutboxKeys, kit.Registry)
	return d, err
}
