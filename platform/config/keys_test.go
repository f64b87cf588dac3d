package config_test

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
)

// purpose is a test purpose with no development key of its own.
var purpose = config.Purpose{Keys: "KEYS", Active: "ACTIVE", Dev: config.DevPIIKeys, MinLen: 32}

func TestKeys(t *testing.T) {
	k32 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	j32 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("j", 32)))
	k16 := base64.RawStdEncoding.EncodeToString([]byte(strings.Repeat("s", 16)))

	t.Run("development mode: unset uses the development key and says so", func(t *testing.T) {
		e := envOf(nil)
		ks := e.Keys(purpose, true)
		require.NoError(t, e.Err())
		require.True(t, ks.Dev)
		require.Equal(t, "dev-pii", ks.Active)
		require.Len(t, ks.Keys["dev-pii"], 32)
	})
	t.Run("production mode: unset is refused, naming the variable", func(t *testing.T) {
		for _, p := range []config.Purpose{config.PIIKeys, config.OutboxKeys, config.SagaContextKeys, config.VersionTokenKeys} {
			e := envOf(nil)
			ks := e.Keys(p, false)
			require.ErrorContains(t, e.Err(), p.Keys+": required in production mode")
			require.Nil(t, ks.Keys)
			require.Nil(t, envOf(nil).Keyring(p, false))
		}
	})
	t.Run("production mode: every public development key is refused", func(t *testing.T) {
		for _, dev := range []string{config.DevPIIKeys, config.DevOutboxKeys, config.DevSagaContextKeys, config.DevVersionTokenKeys} {
			_, key, _ := strings.Cut(dev, ":")
			e := envOf(map[string]string{"KEYS": "mine:" + k32 + ",renamed:" + key, "ACTIVE": "mine"})
			e.Keys(purpose, false)
			require.ErrorContains(t, e.Err(), `KEYS: key "renamed" is a public development key`)
			require.NotContains(t, e.Err().Error(), key)
		}
		e := envOf(map[string]string{"KEYS": config.DevPIIKeys})
		e.Keys(purpose, true)
		require.NoError(t, e.Err(), "development mode takes them when set explicitly")
	})
	t.Run("one key for two purposes is refused", func(t *testing.T) {
		e := envOf(map[string]string{"PII_KEYS": "a:" + k32, "SAGA_CONTEXT_KEYS": "b:" + j32 + ",c:" + k32, "SAGA_CONTEXT_ACTIVE_KEY": "b"})
		e.Keys(config.PIIKeys, false)
		require.NoError(t, e.Err())
		e.Keys(config.SagaContextKeys, false)
		require.ErrorContains(t, e.Err(), `SAGA_CONTEXT_KEYS: key "c" is also a key of PII_KEYS`)

		e = envOf(nil)
		e.Keys(config.PIIKeys, true)
		e.Keys(config.OutboxKeys, true)
		e.Keys(config.SagaContextKeys, true)
		e.Keys(config.VersionTokenKeys, true)
		require.NoError(t, e.Err(), "the development keys differ per purpose")
	})
	t.Run("the only key is active by default", func(t *testing.T) {
		e := envOf(map[string]string{"KEYS": "k1:" + k32})
		ks := e.Keys(purpose, false)
		require.NoError(t, e.Err())
		require.False(t, ks.Dev)
		require.Equal(t, "k1", ks.Active)
	})
	t.Run("several keys need an active one among them", func(t *testing.T) {
		e := envOf(map[string]string{"KEYS": "k1:" + k32 + ",k2:" + j32})
		e.Keys(purpose, false)
		require.ErrorContains(t, e.Err(), "ACTIVE: required")

		e = envOf(map[string]string{"KEYS": "k1:" + k32 + ",k2:" + j32, "ACTIVE": "k3"})
		e.Keys(purpose, false)
		require.ErrorContains(t, e.Err(), `ACTIVE: key id "k3" is not among the keys of KEYS`)

		e = envOf(map[string]string{"KEYS": "k1:" + k32 + ",k2:" + j32, "ACTIVE": "k2"})
		ks := e.Keys(purpose, false)
		require.NoError(t, e.Err())
		require.Equal(t, "k2", ks.Active)
		require.Len(t, ks.Keys, 2)
	})
	t.Run("bad specs name the problem but never the key", func(t *testing.T) {
		for spec, want := range map[string]string{
			"k1:" + k16:                `key "k1": decodes to 16 bytes, need at least 32`,
			"k1" + k32:                 "entry 1 is not kid:base64key",
			"k1:" + k32 + ",k1:" + k32: `key id "k1" appears twice`,
			"k1:!!notbase64!!":         `key "k1": not valid standard base64`,
			"k1:" + k32 + ",:" + k32:   "entry 2: empty key id",
		} {
			e := envOf(map[string]string{"KEYS": spec})
			e.Keys(purpose, false)
			err := e.Err()
			require.ErrorContains(t, err, "KEYS: "+want, spec)
			require.NotContains(t, err.Error(), k32)
		}
	})
}
