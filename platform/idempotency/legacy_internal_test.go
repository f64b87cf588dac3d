package idempotency

import (
	"crypto/rand"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// TestLegacyRecordGoneIsExpired: a hash record that expires between the
// claim's SET (WRONGTYPE) and the read of the hash reads as expired, which
// sends Claim back to claiming the key, not as an error or a record.
func TestLegacyRecordGoneIsExpired(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { _ = rdb.Close() })
	store, err := NewRedisStore(rdb, RedisOptions{Prefix: "idemtest:" + rand.Text() + ":", Service: "svc", Keys: testKeyring(t)})
	require.NoError(t, err)
	rec, err := store.claimLegacy(t.Context(), store.prefix+"gone")
	require.ErrorIs(t, err, errExpired)
	require.Nil(t, rec)
}
