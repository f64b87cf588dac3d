package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func lookupFrom(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(lookupFrom(map[string]string{"GOODGO_MODE": "development"}))
	require.NoError(t, err)
	require.Equal(t, "payment", cfg.Service)
	require.Equal(t, "127.0.0.1:50052", cfg.GRPCAddr)
	require.Equal(t, "127.0.0.1:9102", cfg.HTTPAddr)
	require.Equal(t, "postgres://goodgo_payment@127.0.0.1:5432/goodgo_payment?sslmode=disable", cfg.Database.URL)
	require.Equal(t, "postgres://postgres@127.0.0.1:5432/goodgo_payment?sslmode=disable", cfg.Database.MigrateURL)
	require.Equal(t, "redis://127.0.0.1:6379/0", cfg.Redis.URL)
	require.Equal(t, 24*time.Hour, cfg.Idempotency.TTL)
	require.EqualValues(t, 1_000_000, cfg.DeclineAboveMinor)
	require.True(t, cfg.VersionTokens.Dev)
	require.Equal(t, "dev-pii", cfg.PIIKeys.ActiveKeyID())
	require.Equal(t, "dev", cfg.VersionTokens.Active)
	require.NotNil(t, cfg.OutboxKeys)
}

func TestLoadConfigNamesEachBadVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		vars map[string]string
		want string
	}{
		{"negative decline limit", map[string]string{"PAYMENT_DECLINE_ABOVE_MINOR": "-1"}, "PAYMENT_DECLINE_ABOVE_MINOR: must not be negative"},
		{"non-numeric decline limit", map[string]string{"PAYMENT_DECLINE_ABOVE_MINOR": "lots"}, "PAYMENT_DECLINE_ABOVE_MINOR: must be an integer"},
		{"database url with a wrong scheme", map[string]string{"DATABASE_URL": "mysql://x/y"}, "DATABASE_URL: scheme must be one of"},
		{"short idempotency ttl", map[string]string{"IDEMPOTENCY_TTL": "10ms"}, "IDEMPOTENCY_TTL: must be at least 1s"},
		{"bad listen address", map[string]string{"GRPC_ADDR": "nope"}, "GRPC_ADDR:"},
		{"short version token key", map[string]string{"VERSION_TOKEN_KEYS": "k1:c2hvcnQ="}, "VERSION_TOKEN_KEYS: key \"k1\": decodes to 5 bytes"},
		{"unknown active outbox key", map[string]string{"OUTBOX_ACTIVE_KEY": "k9"}, "OUTBOX_ACTIVE_KEY: key id \"k9\" is not among the keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.vars["GOODGO_MODE"] = "development"
			_, err := loadConfig(lookupFrom(tc.vars))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestLoadConfigZeroDisablesTheAmountLimit(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(lookupFrom(map[string]string{"GOODGO_MODE": "development", "PAYMENT_DECLINE_ABOVE_MINOR": "0"}))
	require.NoError(t, err)
	require.Zero(t, cfg.DeclineAboveMinor)
}
