package servicetest

import (
	"context"
	"net/http"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// RequireIdempotencyKeys requires that a service's idempotency guard stored
// its keys in the local Redis under prefix (its IDEMPOTENCY_KEY_PREFIX),
// and removes them.
func RequireIdempotencyKeys(tb testing.TB, prefix string) {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: localRedis})
	defer func() { _ = rdb.Close() }()
	require.NotZero(tb, deleteKeys(tb, rdb, prefix), "no idempotency key under %q", prefix)
}

// DeleteIdempotencyKeysAtEnd removes, when the test ends, every key a
// service stored under prefix (its IDEMPOTENCY_KEY_PREFIX) in the local
// Redis: a benchmark's records would otherwise stay for their day-long TTL,
// hundreds of thousands of them, slowing every scan of the keyspace.
func DeleteIdempotencyKeysAtEnd(tb testing.TB, prefix string) {
	tb.Cleanup(func() {
		rdb := redis.NewClient(&redis.Options{Addr: localRedis})
		defer func() { _ = rdb.Close() }()
		deleteKeys(tb, rdb, prefix)
	})
}

// localRedis is the Redis the tests run against.
const localRedis = "127.0.0.1:6379"

// deleteKeys unlinks every key of rdb under prefix, scanning the keyspace
// (not KEYS, which blocks the server), a thousand keys per command, and
// returns how many there were.
func deleteKeys(tb testing.TB, rdb redis.UniversalClient, prefix string) int {
	tb.Helper()
	ctx := context.Background()
	n := 0
	var keys []string
	unlink := func() {
		if len(keys) > 0 {
			require.NoError(tb, rdb.Unlink(ctx, keys...).Err())
			n += len(keys)
			keys = keys[:0]
		}
	}
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 1000 {
			unlink()
		}
	}
	require.NoError(tb, iter.Err())
	unlink()
	return n
}

// HTTPGetOK returns the body of a GET of url and requires that it
// answered 200 OK.
func HTTPGetOK(tb testing.TB, url string) string {
	tb.Helper()
	code, body := HTTPGet(tb, url)
	require.Equal(tb, http.StatusOK, code, url)
	return body
}
