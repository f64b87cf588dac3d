// Package postgres connects a service to its PostgreSQL database: a pgx pool
// that waits for the server at start-up, schema migrations that are safe
// with several replicas starting at once, a transaction helper, and the
// classification of errors (constraint violations, transient failures,
// serialization failures).
package postgres

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/internal/childspans"
	"github.com/goodgo/goodgo/platform/logs"
)

// DefaultMaxConns is the pool size when the URL has no pool_max_conns:
// several services share one server locally, and PostgreSQL's default
// max_connections is 100.
const DefaultMaxConns = 10

// Session defaults Connect gives every pooled connection unless the URL sets
// them (see Connect).
const (
	// DefaultStatementTimeout ends a statement that runs longer: a runaway
	// query must not hold a pooled connection, and the gRPC deadline of the
	// call that issued it has long passed by then.
	DefaultStatementTimeout = 15 * time.Second
	// DefaultLockTimeout ends a statement that waits longer for a row or
	// table lock, below DefaultStatementTimeout so that a lock queue
	// reports itself as such (SQLSTATE 55P03, see IsTransient) rather than
	// as a generic timeout.
	DefaultLockTimeout = 10 * time.Second
)

// Connect returns a pool for url (postgres:// or postgresql://, pgx pool
// parameters such as pool_max_conns allowed) once the server answers a ping.
// An unreachable server is retried with exponential backoff (capped at 2 s)
// for up to maxWait, because at start-up the database may come up after the
// service; rejected credentials and a server certificate that does not
// verify fail at once. Errors and logs name the server as
// host:port/database and never contain the password.
//
// TLS is the URL's: sslmode=verify-full&sslrootcert=/path/ca.crt checks the
// server's certificate against that CA and the host name (sslcert and
// sslkey add a client certificate). Connect, EnsureDatabase and Migrate keep
// every such parameter.
//
// Every connection of the pool starts with statement_timeout =
// DefaultStatementTimeout and lock_timeout = DefaultLockTimeout (sent as
// startup parameters), so that neither a runaway query nor a lock queue can
// hold connections indefinitely. The URL overrides either, as a query
// parameter (…?statement_timeout=30000, milliseconds or a unit such as
// '30s'; pgx passes unknown parameters on as run-time parameters) or inside
// options (…?options=-c%20lock_timeout%3D2s); 0 disables the timeout.
// Startup parameters take precedence over ALTER ROLE/DATABASE … SET: a
// setting meant for these pools belongs in the URL.
func Connect(ctx context.Context, url string, logger *slog.Logger, maxWait time.Duration) (*pgxpool.Pool, error) {
	logger = logs.OrDiscard(logger)
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's parse errors already mask the password.
		return nil, fmt.Errorf("postgres: parse database URL: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns
	}
	setSessionDefault(cfg.ConnConfig.RuntimeParams, "statement_timeout", DefaultStatementTimeout)
	setSessionDefault(cfg.ConnConfig.RuntimeParams, "lock_timeout", DefaultLockTimeout)
	// A span per query, batch, COPY and connect, child of the caller's
	// span (the global tracer provider, telemetry.Setup's), so that a trace
	// shows where an order's time goes in the database. The SQL text is
	// recorded, never its arguments (personal data). Only inside a trace:
	// the background loops' polling would make a root trace per query.
	cfg.ConnConfig.Tracer = otelpgx.NewTracer(otelpgx.WithSpanNameFunc(SpanName),
		otelpgx.WithTracerProvider(childspans.Only(otel.GetTracerProvider())))
	cfg.AfterConnect = AfterConnect
	where := Describe(cfg.ConnConfig.Config)

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres at %s: %w", where, err)
	}
	start := time.Now()
	err = backoff.Until(ctx, maxWait, pool.Ping, isPermanent, func(attempt int, err error, wait time.Duration) {
		logger.WarnContext(ctx, "postgres not reachable yet; retrying",
			"server", where, "attempt", attempt, "retry_in", wait.String(), "error", err.Error())
	})
	if err != nil {
		pool.Close()
		if errors.Is(err, backoff.ErrTimeout) {
			return nil, fmt.Errorf("postgres at %s unreachable after %s: %w", where, maxWait, err)
		}
		return nil, fmt.Errorf("postgres at %s: %w", where, err)
	}
	logger.InfoContext(ctx, "postgres connected", "server", where,
		"max_conns", cfg.MaxConns, "waited", time.Since(start).Round(time.Millisecond).String())
	return pool, nil
}

// setSessionDefault sets the run-time parameter name to d unless the URL
// already set it, directly or with -c in options: a startup parameter would
// override the options one, since the server applies options first.
func setSessionDefault(params map[string]string, name string, d time.Duration) {
	if _, ok := params[name]; ok || strings.Contains(params["options"], name) {
		return
	}
	params[name] = strconv.FormatInt(d.Milliseconds(), 10)
}

// isPermanent reports errors that waiting will not fix: the server answered
// and rejected the credentials or the connection (SQLSTATE class 28, also
// pg_hba.conf refusing a connection without TLS), or its certificate did
// not verify against sslrootcert (read once, when the URL is parsed) or
// did not name the host.
func isPermanent(err error) bool {
	var (
		pgErr    *pgconn.PgError
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return (errors.As(err, &pgErr) && strings.HasPrefix(pgErr.Code, "28")) ||
		errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

// Describe names a server as host:port/database, for logs and errors: it
// carries no credentials.
func Describe(cfg pgconn.Config) string {
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))) + "/" + cfg.Database
}

// SpanName names a statement's span: its sqlc query name ("-- name:
// InsertEvents :exec" gives "InsertEvents"), which says what the statement
// is for, or else its first SQL keyword ("SELECT"), a low-cardinality name
// as the OpenTelemetry conventions ask.
func SpanName(stmt string) string {
	for line := range strings.Lines(stmt) {
		line = strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(line, "-- name: "); ok {
			if f := strings.Fields(name); len(f) > 0 {
				return f[0]
			}
		}
		if line == "" || strings.HasPrefix(line, "--") {
			continue
		}
		return strings.ToUpper(strings.Fields(line)[0])
	}
	return "SQL"
}
