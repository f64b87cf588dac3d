package config_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
)

func TestLoadRedis(t *testing.T) {
	t.Run("defaults to the local server without TLS", func(t *testing.T) {
		r := loaded(t, nil, config.LoadRedis)
		require.Equal(t, config.Redis{URL: "redis://127.0.0.1:6379/0"}, r)
		require.False(t, r.TLS())
	})

	t.Run("reads the TLS settings of a rediss:// URL", func(t *testing.T) {
		r := loaded(t, map[string]string{
			"REDIS_URL":             "rediss://:pw@redis.internal:6380/0",
			"REDIS_ADDRS":           "10.0.0.1:6380, 10.0.0.2:6380",
			"REDIS_CA_FILE":         "/etc/redis-tls/ca.crt",
			"REDIS_TLS_CERT_FILE":   "/etc/redis-tls/tls.crt",
			"REDIS_TLS_KEY_FILE":    "/etc/redis-tls/tls.key",
			"REDIS_TLS_SERVER_NAME": "redis.internal",
		}, config.LoadRedis)
		require.Equal(t, config.Redis{
			URL:        "rediss://:pw@redis.internal:6380/0",
			Addrs:      []string{"10.0.0.1:6380", "10.0.0.2:6380"},
			CAFile:     "/etc/redis-tls/ca.crt",
			CertFile:   "/etc/redis-tls/tls.crt",
			KeyFile:    "/etc/redis-tls/tls.key",
			ServerName: "redis.internal",
		}, r)
		require.True(t, r.TLS())
	})

	tests := []struct {
		name string
		vars map[string]string
		want string
	}{
		{"client certificate without key",
			map[string]string{"REDIS_URL": "rediss://redis:6380", "REDIS_TLS_CERT_FILE": "tls.crt"},
			"REDIS_TLS_KEY_FILE: required with REDIS_TLS_CERT_FILE"},
		{"client key without certificate",
			map[string]string{"REDIS_URL": "rediss://redis:6380", "REDIS_TLS_KEY_FILE": "tls.key"},
			"REDIS_TLS_CERT_FILE: required with REDIS_TLS_KEY_FILE"},
		{"CA file with a plaintext URL",
			map[string]string{"REDIS_CA_FILE": "ca.crt"},
			"REDIS_CA_FILE: needs a rediss:// REDIS_URL (TLS)"},
		{"server name with a plaintext URL",
			map[string]string{"REDIS_URL": "redis://redis:6379", "REDIS_TLS_SERVER_NAME": "redis"},
			"REDIS_TLS_SERVER_NAME: needs a rediss:// REDIS_URL (TLS)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := envOf(tt.vars)
			config.LoadRedis(e)
			require.EqualError(t, e.Err(), tt.want)
		})
	}
}
