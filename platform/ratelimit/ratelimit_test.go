package ratelimit_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/ratelimit"
)

const redisAddr = "127.0.0.1:6379"

func TestParseLimit(t *testing.T) {
	valid := []struct {
		in   string
		want ratelimit.Limit
	}{
		{"10/s", ratelimit.Limit{Count: 10, Period: time.Second}},
		{"5/m", ratelimit.Limit{Count: 5, Period: time.Minute}},
		{"1/h", ratelimit.Limit{Count: 1, Period: time.Hour}},
		{" 20/s ", ratelimit.Limit{Count: 20, Period: time.Second}},
		{"0", ratelimit.Limit{}},
		{" 0 ", ratelimit.Limit{}},
	}
	for _, tt := range valid {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ratelimit.ParseLimit(tt.in)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
	invalid := []struct{ in, want string }{
		{"", "is not N/s, N/m or N/h"},
		{"x", "is not N/s, N/m or N/h"},
		{"0/s", "with N at least 1"},
		{"-1/s", "with N at least 1"},
		{"5/d", "the unit must be s, m or h"},
		{"5/", "the unit must be s, m or h"},
		{"5/S", "the unit must be s, m or h"},
		{"5/sec", "the unit must be s, m or h"},
		{"5", "is not N/s, N/m or N/h"},
		{"/s", "is not N/s, N/m or N/h"},
		{"1.5/s", "is not N/s, N/m or N/h"},
		{"5 /s", "is not N/s, N/m or N/h"},
		{"00", "is not N/s, N/m or N/h"},
		{"99999999999999999999/s", "is not N/s, N/m or N/h"},
	}
	for _, tt := range invalid {
		t.Run("invalid "+tt.in, func(t *testing.T) {
			got, err := ratelimit.ParseLimit(tt.in)
			require.ErrorContains(t, err, tt.want)
			require.ErrorContains(t, err, `"`+strings.TrimSpace(tt.in)+`"`, "the error quotes the input")
			require.Zero(t, got)
		})
	}
}

// limiter returns a Limiter over the real Redis with a random key prefix,
// whose keys are deleted when the test ends, and its registry.
func limiter(t *testing.T, limits map[ratelimit.Class]ratelimit.Limit) (*ratelimit.Limiter, *prometheus.Registry, *redis.Client, string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	require.NoError(t, rdb.Ping(t.Context()).Err(), "Redis must run at %s", redisAddr)
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	prefix := "test:ratelimit:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, err := rdb.Keys(ctx, "*"+prefix+"*").Result()
		if err == nil && len(keys) > 0 {
			_ = rdb.Del(ctx, keys...).Err()
		}
	})
	reg := prometheus.NewRegistry()
	l, err := ratelimit.New(rdb, limits, prefix, reg, nil)
	require.NoError(t, err)
	return l, reg, rdb, prefix
}

func refusals(t *testing.T, reg *prometheus.Registry, method string, class ratelimit.Class) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "rate_limit_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["method"] == method && l["class"] == string(class) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

const method = "/goodgo.order.v1.OrderService/PlaceOrder"

func TestAllowRefusesOverLimit(t *testing.T) {
	l, reg, rdb, prefix := limiter(t, map[ratelimit.Class]ratelimit.Limit{ratelimit.Write: {Count: 3, Period: time.Second}})
	ctx := t.Context()

	for i := range 3 {
		ok, wait := l.Allow(ctx, method, ratelimit.Write, "user:alice")
		require.True(t, ok, "call %d of 3", i+1)
		require.Zero(t, wait)
	}
	ok, wait := l.Allow(ctx, method, ratelimit.Write, "user:alice")
	require.False(t, ok, "the 4th call within the second is refused")
	require.Greater(t, wait, time.Duration(0))
	require.LessOrEqual(t, wait, time.Second)
	require.Equal(t, 1.0, refusals(t, reg, method, ratelimit.Write))

	ok, _ = l.Allow(ctx, "/other/Method", ratelimit.Write, "user:alice")
	require.False(t, ok, "the class is shared by the methods of the class")
	require.Equal(t, 1.0, refusals(t, reg, "/other/Method", ratelimit.Write))

	// The state is in Redis, under the prefix, without the user's name.
	keys, err := rdb.Keys(ctx, "*"+prefix+"*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.Contains(t, keys[0], prefix+"write:")
	require.NotContains(t, keys[0], "alice")

	// After the wait, calls are let through again.
	require.Eventually(t, func() bool {
		ok, _ := l.Allow(ctx, method, ratelimit.Write, "user:alice")
		return ok
	}, 3*time.Second, wait/4+time.Millisecond)
}

func TestAllowScopesAreIndependent(t *testing.T) {
	l, reg, _, _ := limiter(t, map[ratelimit.Class]ratelimit.Limit{
		ratelimit.Write: {Count: 2, Period: time.Minute},
		ratelimit.Read:  {Count: 2, Period: time.Minute},
	})
	ctx := t.Context()
	for range 2 {
		ok, _ := l.Allow(ctx, method, ratelimit.Write, "user:alice")
		require.True(t, ok)
	}
	ok, wait := l.Allow(ctx, method, ratelimit.Write, "user:alice")
	require.False(t, ok)
	require.Greater(t, wait, time.Duration(0))

	// Another user has their own budget.
	for range 2 {
		ok, _ := l.Allow(ctx, method, ratelimit.Write, "user:bob")
		require.True(t, ok)
	}
	ok, _ = l.Allow(ctx, method, ratelimit.Write, "user:bob")
	require.False(t, ok)
	// Another class too.
	ok, _ = l.Allow(ctx, method, ratelimit.Read, "user:alice")
	require.True(t, ok)
	// A scope that shares a prefix with another is another scope.
	ok, _ = l.Allow(ctx, method, ratelimit.Write, "user:alice2")
	require.True(t, ok)

	require.Equal(t, 2.0, refusals(t, reg, method, ratelimit.Write))
	require.Zero(t, refusals(t, reg, method, ratelimit.Read))
}

func TestAllowUnlimited(t *testing.T) {
	l, reg, rdb, prefix := limiter(t, map[ratelimit.Class]ratelimit.Limit{
		ratelimit.Write:  {Count: 1, Period: time.Hour},
		ratelimit.Update: {}, // the zero Limit: unlimited
	})
	ctx := t.Context()
	for range 50 {
		for _, c := range []ratelimit.Class{ratelimit.Update, ratelimit.Read, ratelimit.None} {
			ok, wait := l.Allow(ctx, method, c, "user:alice")
			require.True(t, ok, c)
			require.Zero(t, wait)
		}
		// An anonymous scope is never limited.
		ok, _ := l.Allow(ctx, method, ratelimit.Write, "")
		require.True(t, ok)
	}
	keys, err := rdb.Keys(ctx, "*"+prefix+"*").Result()
	require.NoError(t, err)
	require.Empty(t, keys, "unlimited calls do not touch Redis")
	require.Zero(t, refusals(t, reg, method, ratelimit.Update))

	// The limited class still limits.
	ok, _ := l.Allow(ctx, method, ratelimit.Write, "user:alice")
	require.True(t, ok)
	ok, _ = l.Allow(ctx, method, ratelimit.Write, "user:alice")
	require.False(t, ok)
}

func TestAllowConcurrent(t *testing.T) {
	l, reg, _, _ := limiter(t, map[ratelimit.Class]ratelimit.Limit{ratelimit.Write: {Count: 10, Period: time.Minute}})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 20 {
		wg.Go(func() {
			for range 3 {
				if ok, _ := l.Allow(context.Background(), method, ratelimit.Write, "user:carol"); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, 10, allowed, "exactly the burst is let through across replicas' concurrent calls")
	require.Equal(t, 50.0, refusals(t, reg, method, ratelimit.Write))
}

func TestAllowFailsOpenWhenRedisIsDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	reg := prometheus.NewRegistry()
	var logs strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewJSONHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	l, err := ratelimit.New(rdb, map[ratelimit.Class]ratelimit.Limit{ratelimit.Write: {Count: 1, Period: time.Hour}}, "test:", reg, logger)
	require.NoError(t, err)

	for i := range 3 {
		ok, wait := l.Allow(t.Context(), method, ratelimit.Write, "user:alice")
		require.True(t, ok, "call %d is let through", i)
		require.Zero(t, wait)
	}
	require.Equal(t, 3.0, counterValue(t, reg, "rate_limit_errors_total"))
	require.Zero(t, refusals(t, reg, method, ratelimit.Write))
	mu.Lock()
	require.Contains(t, logs.String(), "rate limit check failed; call let through")
	mu.Unlock()

	// A call whose context is already over is let through, not counted:
	// the caller is gone, Redis is not at fault.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ok, _ := l.Allow(ctx, method, ratelimit.Write, "user:alice")
	require.True(t, ok)
	require.Equal(t, 3.0, counterValue(t, reg, "rate_limit_errors_total"))
}

func TestNew(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	t.Cleanup(func() { _ = rdb.Close() })
	_, err := ratelimit.New(nil, nil, "p:", prometheus.NewRegistry(), nil)
	require.Error(t, err)
	_, err = ratelimit.New(rdb, nil, "p:", nil, nil)
	require.Error(t, err)

	reg := prometheus.NewRegistry()
	_, err = ratelimit.New(rdb, nil, "p:", reg, nil)
	require.NoError(t, err)
	_, err = ratelimit.New(rdb, nil, "p:", reg, nil)
	require.ErrorContains(t, err, "register metrics", "the metrics are registered once per registry")

	// A Limiter without limits limits nothing.
	l, err := ratelimit.New(rdb, nil, "p:", prometheus.NewRegistry(), nil)
	require.NoError(t, err)
	for _, c := range ratelimit.Classes {
		ok, _ := l.Allow(t.Context(), method, c, "user:alice")
		require.True(t, ok)
	}
}

// counterValue is the value of the unlabelled counter name on reg (0 when
// it has not been collected).
func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Len(t, mf.GetMetric(), 1)
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
