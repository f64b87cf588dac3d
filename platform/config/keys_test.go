package config_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
)

func TestKeySet(t *testing.T) {
	k32 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	k16 := base64.RawStdEncoding.EncodeToString([]byte(strings.Repeat("s", 16)))

	t.Run("unset uses the development key and says so", func(t *testing.T) {
		e := envOf(nil)
		ks := e.KeySet("KEYS", "ACTIVE", config.DevEncryptionKeys, 32)
		require.NoError(t, e.Err())
		require.True(t, ks.Dev)
		require.Equal(t, "dev", ks.Active)
		require.Len(t, ks.Keys["dev"], 32)
	})
	t.Run("the only key is active by default", func(t *testing.T) {
		e := envOf(map[string]string{"KEYS": "k1:" + k32})
		ks := e.KeySet("KEYS", "ACTIVE", config.DevEncryptionKeys, 32)
		require.NoError(t, e.Err())
		require.False(t, ks.Dev)
		require.Equal(t, "k1", ks.Active)
	})
	t.Run("several keys need an active one among them", func(t *testing.T) {
		e := envOf(map[string]string{"KEYS": "k1:" + k32 + ",k2:" + k32})
		e.KeySet("KEYS", "ACTIVE", "", 32)
		require.ErrorContains(t, e.Err(), "ACTIVE: required")

		e = envOf(map[string]string{"KEYS": "k1:" + k32 + ",k2:" + k32, "ACTIVE": "k3"})
		e.KeySet("KEYS", "ACTIVE", "", 32)
		require.ErrorContains(t, e.Err(), `ACTIVE: key id "k3" is not among the keys of KEYS`)

		e = envOf(map[string]string{"KEYS": "k1:" + k32 + ",k2:" + k32, "ACTIVE": "k2"})
		ks := e.KeySet("KEYS", "ACTIVE", "", 32)
		require.NoError(t, e.Err())
		require.Equal(t, "k2", ks.Active)
		require.Len(t, ks.Keys, 2)
	})
	t.Run("bad specs name the problem but never the key", func(t *testing.T) {
		for spec, want := range map[string]string{
			"k1:" + k16:                `key "k1" is 16 bytes, need at least 32`,
			"k1" + k32:                 "entry 1 is not kid:base64key",
			"k1:" + k32 + ",k1:" + k32: `key id "k1" appears twice`,
			"k1:!!notbase64!!":         `key "k1" is not valid base64`,
			"k1:" + k32 + ",:" + k32:   "entry 2 is not kid:base64key",
		} {
			e := envOf(map[string]string{"KEYS": spec})
			e.KeySet("KEYS", "ACTIVE", "", 32)
			err := e.Err()
			require.ErrorContains(t, err, "KEYS: "+want, spec)
			require.NotContains(t, err.Error(), k32)
		}
	})
}
