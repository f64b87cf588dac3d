// Package postgres connects a service to its PostgreSQL database: a pgx pool
// that waits for the server at start-up, schema migrations that are safe
// with several replicas starting at once, and small helpers for
// transactions and constraint errors.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/platform/internal/retry"
)

// DefaultMaxConns is the pool size when the URL has no pool_max_conns:
// several services share one server locally, and PostgreSQL's default
// max_connections is 100.
const DefaultMaxConns = 10

// Connect returns a pool for url (postgres:// or postgresql://, pgx pool
// parameters such as pool_max_conns allowed) once the server answers a ping.
// An unreachable server is retried with exponential backoff (capped at 2 s)
// for up to maxWait, because at start-up the database may come up after the
// service; rejected credentials fail at once. Errors and logs name the
// server as host:port/database and never contain the password.
func Connect(ctx context.Context, url string, logger *slog.Logger, maxWait time.Duration) (*pgxpool.Pool, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's parse errors already mask the password.
		return nil, fmt.Errorf("postgres: parse database URL: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	where := Describe(cfg.ConnConfig.Config)

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres at %s: %w", where, err)
	}
	start := time.Now()
	err = retry.Until(ctx, maxWait, pool.Ping, isPermanent, func(attempt int, err error, wait time.Duration) {
		logger.WarnContext(ctx, "postgres not reachable yet; retrying",
			"server", where, "attempt", attempt, "retry_in", wait.String(), "error", err.Error())
	})
	if err != nil {
		pool.Close()
		if errors.Is(err, retry.ErrTimeout) {
			return nil, fmt.Errorf("postgres at %s unreachable after %s: %w", where, maxWait, err)
		}
		return nil, fmt.Errorf("postgres at %s: %w", where, err)
	}
	logger.InfoContext(ctx, "postgres connected", "server", where,
		"max_conns", cfg.MaxConns, "waited", time.Since(start).Round(time.Millisecond).String())
	return pool, nil
}

// isPermanent reports errors that waiting will not fix: the server answered
// and rejected the credentials (SQLSTATE class 28).
func isPermanent(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "28")
}

// Describe names a server as host:port/database, for logs and errors: it
// carries no credentials.
func Describe(cfg pgconn.Config) string {
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))) + "/" + cfg.Database
}
