package redisclient

import (
	"crypto/tls"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
)

func TestTLSConfig(t *testing.T) {
	t.Parallel()
	base := &tls.Config{ServerName: "redis.example", MinVersion: tls.VersionTLS10}

	c, err := tlsConfig(base, config.Redis{}, false)
	require.NoError(t, err)
	require.Equal(t, uint16(tls.VersionTLS12), c.MinVersion, "TLS 1.2 at least")
	require.Equal(t, "redis.example", c.ServerName)
	require.Equal(t, uint16(tls.VersionTLS10), base.MinVersion, "the parsed config is not changed")

	c, err = tlsConfig(base, config.Redis{}, true)
	require.NoError(t, err)
	require.Empty(t, c.ServerName, "a cluster client checks each node by the address it dials")

	c, err = tlsConfig(base, config.Redis{ServerName: "redis.internal"}, true)
	require.NoError(t, err)
	require.Equal(t, "redis.internal", c.ServerName)

	c, err = tlsConfig(nil, config.Redis{}, false)
	require.NoError(t, err)
	require.Nil(t, c, "redis:// stays plaintext")
	_, err = tlsConfig(nil, config.Redis{CAFile: "ca.crt"}, true)
	require.ErrorContains(t, err, "TLS settings need a rediss:// REDIS_URL", "not silently plaintext")
}
