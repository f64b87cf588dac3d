package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/relay"
)

// dev is development mode: the credentials default to .dev's.
var dev = map[string]string{"GOODGO_MODE": "development"}

func lookup(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

func TestLoadConfigDefaults(t *testing.T) {
	c, err := loadConfig(lookup(dev))
	require.NoError(t, err)
	require.Len(t, c.OutboxDatabaseURLs, 3)
	require.Equal(t, ".dev/pki/outbox-relay.crt", c.Security.TLS.Cert)
	require.Equal(t, []string{"127.0.0.1:9092"}, c.Kafka.Brokers)
	require.False(t, c.Kafka.TLS, "plaintext by default")
	require.Empty(t, c.Kafka.SASL.Mechanism, "no SASL by default")
	require.Equal(t, relay.DefaultBatchSize, c.BatchSize)
	require.Equal(t, relay.DefaultWorkers, c.Workers)
	require.Equal(t, time.Second, c.PollInterval)
	require.Equal(t, 3*time.Second, c.LeaseTTL, "a crashed replica's lanes move within about 3 s")
	require.Equal(t, time.Minute, c.Retention)
	require.Equal(t, "dev", c.OutboxKeys.ActiveKeyID())
	require.NotEmpty(t, c.RelayID)
	require.LessOrEqual(t, len(c.RelayID), relay.MaxRelayIDLen)

	other, err := loadConfig(lookup(dev))
	require.NoError(t, err)
	require.NotEqual(t, c.RelayID, other.RelayID, "a default id is unique per start")
}

func TestProductionRefusesMissingOrDevelopmentKeys(t *testing.T) {
	base := map[string]string{"TLS_CERT_FILE": "/tls/tls.crt", "TLS_KEY_FILE": "/tls/tls.key", "TLS_CA_FILE": "/tls/ca.crt"}
	_, err := loadConfig(lookup(base))
	require.ErrorContains(t, err, "OUTBOX_KEYS: required in production mode")
	base["OUTBOX_KEYS"] = config.DevOutboxKeys
	_, err = loadConfig(lookup(base))
	require.ErrorContains(t, err, `OUTBOX_KEYS: key "dev" is a public development key`)
}

func TestLoadConfigReadsEveryVariable(t *testing.T) {
	c, err := loadConfig(lookup(map[string]string{
		"TLS_CERT_FILE":           "/tls/tls.crt",
		"TLS_KEY_FILE":            "/tls/tls.key",
		"TLS_CA_FILE":             "/tls/ca.crt",
		"AUTH_ISSUER":             "https://idp.example",
		"AUTH_AUDIENCE":           "goodgo",
		"AUTH_JWKS_FILE":          "/auth/jwks.json",
		"OUTBOX_DATABASE_URLS":    "postgres://a/x, postgres://b/y",
		"KAFKA_BROKERS":           "k1:9092,k2:9092",
		"RELAY_ID":                "relay-7",
		"OUTBOX_BATCH_SIZE":       "100",
		"OUTBOX_WORKERS":          "2",
		"OUTBOX_POLL_INTERVAL":    "250ms",
		"OUTBOX_LEASE_TTL":        "5s",
		"OUTBOX_RETENTION":        "0s",
		"OUTBOX_JANITOR_INTERVAL": "1s",
		"OUTBOX_STATS_INTERVAL":   "2s",
		"OUTBOX_MAX_BATCH_BYTES":  "65536",
		"OUTBOX_KEYS":             "o1:QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=,o2:QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI=",
		"OUTBOX_ACTIVE_KEY":       "o2",
	}))
	require.NoError(t, err)
	require.Equal(t, "o2", c.OutboxKeys.ActiveKeyID())
	require.Equal(t, []string{"o1", "o2"}, c.OutboxKeys.KeyIDs())
	require.Equal(t, []string{"postgres://a/x", "postgres://b/y"}, c.OutboxDatabaseURLs)
	require.Equal(t, []string{"k1:9092", "k2:9092"}, c.Kafka.Brokers)
	require.Equal(t, "relay-7", c.RelayID)
	require.Equal(t, 100, c.BatchSize)
	require.Equal(t, 2, c.Workers)
	require.Equal(t, 250*time.Millisecond, c.PollInterval)
	require.Equal(t, 5*time.Second, c.LeaseTTL)
	require.Zero(t, c.Retention)
	require.Equal(t, time.Second, c.JanitorInterval)
	require.Equal(t, 2*time.Second, c.StatsInterval)
	require.Equal(t, 65536, c.MaxBatchBytes)
	require.Equal(t, "/tls/tls.key", c.Security.TLS.Key)
	require.Equal(t, "https://idp.example", c.Security.Tokens.Issuer, "operators call ParkedEventService with tokens")
	require.Equal(t, "/auth/jwks.json", c.Security.Tokens.JWKSFile)
}

func TestLoadConfigNamesEveryBadVariable(t *testing.T) {
	_, err := loadConfig(lookup(map[string]string{
		"OUTBOX_DATABASE_URLS": "mysql://x/y",
		"OUTBOX_BATCH_SIZE":    "5001",
		"OUTBOX_WORKERS":       "0",
		"OUTBOX_LEASE_TTL":     "100ms",
		"OUTBOX_POLL_INTERVAL": "soon",
		"RELAY_ID":             strings.Repeat("x", 51),
	}))
	require.Error(t, err)
	for _, name := range []string{"OUTBOX_DATABASE_URLS", "OUTBOX_BATCH_SIZE", "OUTBOX_WORKERS", "OUTBOX_LEASE_TTL", "OUTBOX_POLL_INTERVAL", "RELAY_ID",
		"TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CA_FILE", "AUTH_ISSUER", "AUTH_AUDIENCE", "AUTH_JWKS_URL"} {
		require.Contains(t, err.Error(), name+":")
	}
}
