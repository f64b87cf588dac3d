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
)

// DomainConfig is the configuration of the order, payment and inventory
// services: a ServiceConfig and the keys of what a domain service writes.
type DomainConfig struct {
	ServiceConfig
	// VersionTokens sign and verify version tokens, by key id
	// (VERSION_TOKEN_KEYS "kid:base64,…", keys of at least 32 bytes;
	// VERSION_TOKEN_ACTIVE_KEY signs, default the only key id).
	VersionTokens config.KeySet
	// OutboxKeys encrypt PII event payloads (OUTBOX_KEYS "kid:base64,…",
	// 32-byte AES-256 keys; OUTBOX_ACTIVE_KEY, default the only key id).
	// Services whose events carry no PII configure them all the same, so
	// that a future PII event needs no new settings.
	OutboxKeys *keyring.Keyring
}

// LoadDomainConfig reads DomainConfig for service (its name, and the
// default database goodgo_<service>) with the service's default listen
// addresses. Problems are recorded in e.
func LoadDomainConfig(e *config.Env, service, grpcAddr, httpAddr string) DomainConfig {
	base := LoadServiceConfig(e, service, grpcAddr, httpAddr)
	return DomainConfig{
		ServiceConfig: base,
		VersionTokens: e.Keys(config.VersionTokenKeys, base.Dev),
		OutboxKeys:    e.Keyring(config.OutboxKeys, base.Dev),
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
	kit, err := OpenService(ctx, cfg.ServiceConfig, version, migrations, outbox.WriterExcess, policies, stdout, lookup)
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
	if d.Signer, err = optlock.NewSigner(cfg.VersionTokens.Active, cfg.VersionTokens.Keys); err != nil {
		return d, err
	}
	if d.Locks, err = optlock.NewMetrics(kit.Registry); err != nil {
		return d, err
	}
	d.Outbox, err = outbox.NewWriter(cfg.OutboxKeys, kit.Registry)
	return d, err
}
