// Package redisclient connects to Redis, a single server or a Redis Cluster,
// waiting for it at start-up the way platform/postgres waits for PostgreSQL.
package redisclient

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/goodgo/goodgo/platform/internal/retry"
)

// Connect returns a Redis client once the server answers PING, retrying
// with exponential backoff (capped at 2 s) for up to maxWait.
//
// With addrs non-empty (REDIS_ADDRS) it is a Redis Cluster client seeded
// with those nodes; url, if set, then only supplies the credentials and TLS
// settings. Otherwise url (REDIS_URL: redis://[user:password@]host:port/db
// or rediss:// for TLS) names a single server. Errors and logs name the
// server by address and never carry the password.
func Connect(ctx context.Context, url string, addrs []string, logger *slog.Logger, maxWait time.Duration) (redis.UniversalClient, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var (
		client redis.UniversalClient
		where  string
	)
	var single *redis.Options
	if url != "" {
		opts, err := redis.ParseURL(url)
		if err != nil {
			return nil, fmt.Errorf("redis: parse REDIS_URL: %s", maskPassword(err.Error(), url))
		}
		single = opts
	}
	switch {
	case len(addrs) > 0:
		opts := &redis.ClusterOptions{Addrs: addrs}
		if single != nil {
			opts.Username, opts.Password, opts.TLSConfig = single.Username, single.Password, single.TLSConfig
		}
		client = redis.NewClusterClient(opts)
		where = "cluster " + strings.Join(addrs, ",")
	case single != nil:
		client = redis.NewClient(single)
		where = single.Addr
	default:
		return nil, fmt.Errorf("redis: neither a URL nor cluster addresses given")
	}

	start := time.Now()
	ping := func(ctx context.Context) error { return client.Ping(ctx).Err() }
	err := retry.Until(ctx, maxWait, ping, nil, func(attempt int, err error, wait time.Duration) {
		logger.WarnContext(ctx, "redis not reachable yet; retrying",
			"server", where, "attempt", attempt, "retry_in", wait.String(), "error", err.Error())
	})
	if err != nil {
		_ = client.Close()
		return nil, fmt.Errorf("redis at %s unreachable after %s: %w", where, maxWait, err)
	}
	logger.InfoContext(ctx, "redis connected", "server", where,
		"waited", time.Since(start).Round(time.Millisecond).String())
	return client, nil
}

// maskPassword hides the password of rawURL in msg: go-redis quotes the
// whole URL in some parse errors. rawURL may not parse, so it is taken
// apart by hand: the password sits between the first ":" after "://" and
// the last "@".
func maskPassword(msg, rawURL string) string {
	_, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return msg
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return msg
	}
	if _, pw, ok := strings.Cut(rest[:at], ":"); ok && pw != "" {
		return strings.ReplaceAll(msg, pw, "xxxxx")
	}
	return msg
}
