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

// HTTPGetOK returns the body of a GET of url and requires that it
// answered 200 OK.
func HTTPGetOK(tb testing.TB, url string) string {
	tb.Helper()
	code, body := HTTPGet(tb, url)
	require.Equal(tb, http.StatusOK, code, url)
	return body
}
