package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/keyring"
)

// Development keys, used when VERSION_TOKEN_KEYS or OUTBOX_KEYS is unset so
// that the binary runs out of the box. They are public: run logs a warning
// when either is in use. The outbox key must match the outbox-relay's, which
// decrypts the PII events this service writes.
const (
	devVersionTokenKeys = "dev:Z29vZGdvLWRldi12ZXJzaW9uLXRva2VuLWtleS0wMDE=" //nolint:gosec // G101: public by design
	devOutboxKeys       = "dev:Z29vZGdvLWRldi1vdXRib3gtcGlpLWtleS0wMDAwMDE=" //nolint:gosec // G101: public by design
)

// Config is the order service's configuration, read once from the
// environment by loadConfig. Every variable has a default that works on a
// developer machine.
type Config struct {
	config.Common

	// DatabaseURL is the order service's own PostgreSQL database
	// (DATABASE_URL); it is created if missing and migrated at start.
	DatabaseURL string
	// RedisURL is the Redis server holding idempotency keys (REDIS_URL).
	RedisURL string
	// RedisAddrs, when set, names Redis Cluster nodes and takes precedence
	// over RedisURL (REDIS_ADDRS, comma-separated host:port).
	RedisAddrs []string
	// IdempotencyTTL is how long a completed request is replayed
	// (IDEMPOTENCY_TTL, default 24h).
	IdempotencyTTL time.Duration
	// IdempotencyPrefix starts every idempotency key in Redis
	// (IDEMPOTENCY_KEY_PREFIX, default "idem:"); keys are already scoped by
	// method, so services may share a prefix.
	IdempotencyPrefix string
	// InventoryAddr is the gRPC target of the inventory service, which owns
	// the catalog (INVENTORY_ADDR).
	InventoryAddr string
	// CatalogTimeout bounds one catalog read during PlaceOrder
	// (CATALOG_TIMEOUT, default 2s).
	CatalogTimeout time.Duration
	// VersionTokenKeys sign and verify version tokens, by key id
	// (VERSION_TOKEN_KEYS "kid:base64,…", keys of at least 32 bytes);
	// VersionTokenActiveKey signs (VERSION_TOKEN_ACTIVE_KEY, default the only
	// key id when there is one).
	VersionTokenKeys      map[string][]byte
	VersionTokenActiveKey string
	// OutboxKeys encrypts PII event payloads (OUTBOX_KEYS "kid:base64,…",
	// 32-byte AES-256 keys; OUTBOX_ACTIVE_KEY, default the only key id).
	OutboxKeys *keyring.Keyring
	// DevVersionTokenKeys and DevOutboxKeys report that the public
	// development keys are in use.
	DevVersionTokenKeys bool
	DevOutboxKeys       bool
}

// loadConfig reads the configuration through lookup (os.LookupEnv in main).
// The error names every bad variable, one "NAME: problem" line each.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	e := config.NewEnv(lookup)
	c := Config{
		Common:            config.LoadCommon(e, "order", "127.0.0.1:50051", "127.0.0.1:9091"),
		DatabaseURL:       e.URL("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/goodgo_order?sslmode=disable", "postgres", "postgresql"),
		RedisURL:          e.URL("REDIS_URL", "redis://127.0.0.1:6379/0", "redis", "rediss"),
		RedisAddrs:        e.List("REDIS_ADDRS", nil),
		IdempotencyTTL:    e.Duration("IDEMPOTENCY_TTL", 24*time.Hour),
		IdempotencyPrefix: e.String("IDEMPOTENCY_KEY_PREFIX", "idem:"),
		InventoryAddr:     e.String("INVENTORY_ADDR", "127.0.0.1:50053"),
		CatalogTimeout:    e.Duration("CATALOG_TIMEOUT", 2*time.Second),
	}
	if c.IdempotencyTTL < time.Second {
		e.Invalid("IDEMPOTENCY_TTL", "must be at least 1s")
	}
	if c.CatalogTimeout <= 0 {
		e.Invalid("CATALOG_TIMEOUT", "must be positive")
	}

	spec := e.String("VERSION_TOKEN_KEYS", "")
	c.DevVersionTokenKeys = spec == ""
	if c.DevVersionTokenKeys {
		spec = devVersionTokenKeys
	}
	keys, err := parseKeys(spec, 32)
	if err != nil {
		e.Invalid("VERSION_TOKEN_KEYS", err.Error())
	}
	c.VersionTokenKeys = keys
	c.VersionTokenActiveKey = activeKey(e, "VERSION_TOKEN_ACTIVE_KEY", keys)

	spec = e.String("OUTBOX_KEYS", "")
	c.DevOutboxKeys = spec == ""
	if c.DevOutboxKeys {
		spec = devOutboxKeys
	}
	if keys, err := parseKeys(spec, keyring.KeySize); err != nil {
		e.Invalid("OUTBOX_KEYS", err.Error())
	} else if active := activeKey(e, "OUTBOX_ACTIVE_KEY", keys); active != "" {
		if c.OutboxKeys, err = keyring.New(active, keys); err != nil {
			e.Invalid("OUTBOX_KEYS", err.Error())
		}
	}
	return c, e.Err()
}

// parseKeys parses "kid:base64key,…" (standard base64, padded or not). Each
// key must be at least minLen bytes. Errors never contain key material.
func parseKeys(spec string, minLen int) (map[string][]byte, error) {
	keys := make(map[string][]byte)
	for i, entry := range strings.Split(spec, ",") {
		kid, encoded, ok := strings.Cut(strings.TrimSpace(entry), ":")
		kid = strings.TrimSpace(kid)
		if !ok || kid == "" {
			return nil, fmt.Errorf("entry %d is not kid:base64key", i+1)
		}
		if _, dup := keys[kid]; dup {
			return nil, fmt.Errorf("key id %q appears twice", kid)
		}
		encoded = strings.TrimSpace(encoded)
		enc := base64.StdEncoding
		if !strings.HasSuffix(encoded, "=") {
			enc = base64.RawStdEncoding
		}
		key, err := enc.DecodeString(encoded)
		if err != nil {
			return nil, fmt.Errorf("key %q is not valid standard base64", kid)
		}
		if len(key) < minLen {
			return nil, fmt.Errorf("key %q is %d bytes, need at least %d", kid, len(key), minLen)
		}
		keys[kid] = key
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	return keys, nil
}

// activeKey reads the active key id from name: required when there are
// several keys, the only key id otherwise; it must be among keys.
func activeKey(e *config.Env, name string, keys map[string][]byte) string {
	if len(keys) == 0 {
		return "" // the keys themselves were reported
	}
	def := ""
	if len(keys) == 1 {
		for kid := range keys {
			def = kid
		}
	}
	active := e.String(name, def)
	switch {
	case active == "":
		e.Invalid(name, "required when there are several keys")
	case keys[active] == nil:
		e.Invalid(name, fmt.Sprintf("key id %q is not among the keys", active))
		return ""
	}
	return active
}
