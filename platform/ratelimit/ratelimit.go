// Package ratelimit limits how often one end user may call, per class of
// RPC, with a GCRA limiter in Redis (go-redis/redis_rate) shared by every
// replica. Each RPC's class is declared in its authorization policy
// (platform/authz), which asks the Limiter before the handler runs.
//
// Limits apply to end users only. Services calling each other (the saga's
// steps) are not limited here: their load follows from what users were
// allowed to start, and limiting them would turn a burst of admitted
// orders into failed sagas.
//
// When Redis fails, calls are let through (fail open) and counted: a rate
// limit protects capacity, it does not guard an invariant, and a Redis
// outage must not take every read down with it.
package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/goodgo/goodgo/platform/logs"
)

// Class groups RPCs that share one limit per user.
type Class string

// The classes: reads; mutating calls; version-checked updates of an
// existing aggregate, which contend on one row and are limited hardest.
const (
	None   Class = ""
	Read   Class = "read"
	Write  Class = "write"
	Update Class = "update"
)

// Classes are the limited classes, in the order they are configured.
var Classes = []Class{Read, Write, Update}

// Limit is a rate: Count calls per Period, in bursts of up to Count.
// The zero Limit means unlimited.
type Limit struct {
	Count  int
	Period time.Duration
}

// ParseLimit reads "N/s", "N/m" or "N/h" (N ≥ 1), or "0" for unlimited.
func ParseLimit(s string) (Limit, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return Limit{}, nil
	}
	n, unit, ok := strings.Cut(s, "/")
	count, err := strconv.Atoi(n)
	if !ok || err != nil || count < 1 {
		return Limit{}, fmt.Errorf("%q is not N/s, N/m or N/h with N at least 1, or 0", s)
	}
	periods := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}
	p, ok := periods[unit]
	if !ok {
		return Limit{}, fmt.Errorf("%q: the unit must be s, m or h", s)
	}
	return Limit{Count: count, Period: p}, nil
}

// Limiter answers whether a user may make one more call of a class. Safe
// for concurrent use.
type Limiter struct {
	rl       *redis_rate.Limiter
	limits   map[Class]redis_rate.Limit
	prefix   string
	logger   *slog.Logger
	refused  *prometheus.CounterVec
	failures prometheus.Counter
}

// New returns a Limiter over rdb with limits per class (a class without a
// limit, or with the zero Limit, is unlimited). Keys start with prefix.
// It registers rate_limit_refusals_total{method,class} and
// rate_limit_errors_total on reg.
func New(rdb redis.UniversalClient, limits map[Class]Limit, prefix string, reg prometheus.Registerer, logger *slog.Logger) (*Limiter, error) {
	if rdb == nil || reg == nil {
		return nil, errors.New("ratelimit: Redis client and registerer are required")
	}
	logger = logs.OrDiscard(logger)
	l := &Limiter{
		rl:     redis_rate.NewLimiter(rdb),
		limits: map[Class]redis_rate.Limit{},
		prefix: prefix,
		logger: logger,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rate_limit_refusals_total",
			Help: "Calls refused with ResourceExhausted because their user exceeded the class's rate limit.",
		}, []string{"method", "class"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rate_limit_errors_total",
			Help: "Rate-limit checks that failed (Redis unavailable); the calls were let through.",
		}),
	}
	for c, lim := range limits {
		if lim.Count > 0 {
			l.limits[c] = redis_rate.Limit{Rate: lim.Count, Burst: lim.Count, Period: lim.Period}
		}
	}
	for _, c := range []prometheus.Collector{l.refused, l.failures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ratelimit: register metrics: %w", err)
		}
	}
	return l, nil
}

// Allow takes one call of class for the caller scope (caller.Identity's
// Scope) of method. It returns ok == false with the wait before the next
// call would be allowed when the limit is exhausted. A Redis failure
// allows the call.
func (l *Limiter) Allow(ctx context.Context, method string, class Class, scope string) (ok bool, retryAfter time.Duration) {
	lim, limited := l.limits[class]
	if !limited || scope == "" {
		return true, 0
	}
	sum := sha256.Sum256([]byte(scope))
	key := l.prefix + string(class) + ":" + hex.EncodeToString(sum[:16])
	res, err := l.rl.Allow(ctx, key, lim)
	if err != nil {
		if ctx.Err() == nil {
			l.failures.Inc()
			l.logger.WarnContext(ctx, "rate limit check failed; call let through", "class", string(class), "error", err)
		}
		return true, 0
	}
	if res.Allowed > 0 {
		return true, 0
	}
	l.refused.WithLabelValues(method, string(class)).Inc()
	return false, max(res.RetryAfter, time.Millisecond)
}
