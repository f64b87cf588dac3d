// Package redisclient connects to Redis, a single server or a Redis Cluster,
// waiting for it at start-up the way platform/postgres waits for PostgreSQL.
package redisclient

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/logs"
)

// Connect returns a Redis client once the server answers PING, retrying
// with exponential backoff (capped at 2 s) for up to maxWait.
//
// With cfg.Addrs non-empty (REDIS_ADDRS) it is a Redis Cluster client
// seeded with those nodes; cfg.URL, if set, then only supplies the
// credentials and TLS settings. Otherwise cfg.URL (REDIS_URL:
// redis://[user:password@]host:port/db or rediss:// for TLS) names a single
// server. Errors and logs name the server by address and never carry the
// password.
//
// With TLS (rediss://) the server's certificate must chain to cfg.CAFile
// (or the system roots) and name the host dialled (cfg.ServerName when set;
// for a cluster, each node's own host) and TLS 1.2 is the minimum; a client
// certificate (cfg.CertFile, cfg.KeyFile) is presented when set and re-read
// when its files change, so renewed certificates are used for new
// connections. An unreadable file fails at once naming its variable; so does
// a server certificate that does not verify, since waiting will not fix it.
func Connect(ctx context.Context, cfg config.Redis, logger *slog.Logger, maxWait time.Duration) (redis.UniversalClient, error) {
	logger = logs.OrDiscard(logger)
	var (
		client redis.UniversalClient
		where  string
	)
	var single *redis.Options
	if cfg.URL != "" {
		opts, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("redis: parse REDIS_URL: %s", maskPassword(err.Error(), cfg.URL))
		}
		single = opts
	}
	switch {
	case len(cfg.Addrs) > 0:
		opts := &redis.ClusterOptions{Addrs: cfg.Addrs}
		var base *tls.Config
		if single != nil {
			opts.Username, opts.Password, base = single.Username, single.Password, single.TLSConfig
		}
		tlsCfg, err := tlsConfig(base, cfg, true)
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = tlsCfg
		client = redis.NewClusterClient(opts)
		where = "cluster " + strings.Join(cfg.Addrs, ",")
	case single != nil:
		tlsCfg, err := tlsConfig(single.TLSConfig, cfg, false)
		if err != nil {
			return nil, err
		}
		single.TLSConfig = tlsCfg
		client = redis.NewClient(single)
		where = single.Addr
	default:
		return nil, fmt.Errorf("redis: neither a URL nor cluster addresses given")
	}

	instrument(client)
	start := time.Now()
	ping := func(ctx context.Context) error { return client.Ping(ctx).Err() }
	err := backoff.Until(ctx, maxWait, ping, isCertError, func(attempt int, err error, wait time.Duration) {
		logger.WarnContext(ctx, "redis not reachable yet; retrying",
			"server", where, "attempt", attempt, "retry_in", wait.String(), "error", err.Error())
	})
	if err != nil {
		_ = client.Close()
		if isCertError(err) {
			return nil, fmt.Errorf("redis at %s: TLS: %w", where, err)
		}
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
