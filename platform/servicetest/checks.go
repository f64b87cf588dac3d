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
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer func() { _ = rdb.Close() }()
	keys, err := rdb.Keys(context.Background(), prefix+"*").Result()
	require.NoError(tb, err)
	require.NotEmpty(tb, keys, "no idempotency key under %q", prefix)
	require.NoError(tb, rdb.Del(context.Background(), keys...).Err())
}

// DeleteIdempotencyKeysAtEnd removes, when the test ends, every key a
// service stored under prefix (its IDEMPOTENCY_KEY_PREFIX) in the local
// Redis: a benchmark's records would otherwise stay for their day-long TTL,
// hundreds of thousands of them, slowing every scan of the keyspace.
func DeleteIdempotencyKeysAtEnd(tb testing.TB, prefix string) {
	tb.Cleanup(func() {
		ctx := context.Background()
		rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
		defer func() { _ = rdb.Close() }()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			if keys = append(keys, iter.Val()); len(keys) == 1000 {
				require.NoError(tb, rdb.Unlink(ctx, keys...).Err())
				keys = keys[:0]
			}
		}
		require.NoError(tb, iter.Err())
		if len(keys) > 0 {
			require.NoError(tb, rdb.Unlink(ctx, keys...).Err())
		}
	})
}

// HTTPGetOK returns the body of a GET of url and requires that it
// answered 200 OK.
func HTTPGetOK(tb testing.TB, url string) string {
	tb.Helper()
	code, body := HTTPGet(tb, url)
	require.Equal(tb, http.StatusOK, code, url)
	return body
}
