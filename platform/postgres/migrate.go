package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5" // registers pgx5://
	"github.com/golang-migrate/migrate/v4/source/iofs"

	"github.com/goodgo/goodgo/platform/logs"
)

// Migrate applies the golang-migrate files in migrations (NNNNNN_name.up.sql
// at the root of the fs.FS) to the database at url (postgres://,
// postgresql:// or pgx5://) up to the latest version. Having nothing to do
// is success. golang-migrate holds a PostgreSQL advisory lock while it
// works, so replicas starting at once apply each migration exactly once;
// the others wait and find nothing left to do. A database left dirty by a
// failed migration is reported, never forced.
//
// When ctx is cancelled the migration stops after the current file.
func Migrate(ctx context.Context, url string, migrations fs.FS, logger *slog.Logger) error {
	logger = logs.OrDiscard(logger)
	dbURL, where, err := migrateURL(url)
	if err != nil {
		return err
	}
	src, err := iofs.New(migrations, ".")
	if err != nil {
		return fmt.Errorf("postgres: migrations source: %w", err)
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, dbURL)
	if err != nil {
		return fmt.Errorf("postgres: migrate %s: %s", where, redactErr(err, url))
	}
	defer func() {
		if srcErr, dbErr := m.Close(); srcErr != nil || dbErr != nil {
			logger.Warn("postgres: closing migrate", "server", where, "error", errors.Join(srcErr, dbErr))
		}
	}()
	m.Log = migrateLogger{ctx: ctx, logger: logger, where: where}

	stop := context.AfterFunc(ctx, func() {
		select {
		case m.GracefulStop <- true:
		default:
		}
	})
	defer stop()

	from, _, err := version(m)
	if err != nil {
		return fmt.Errorf("postgres: migrate %s: %w", where, err)
	}
	err = m.Up()
	switch {
	case errors.Is(err, migrate.ErrNoChange):
		logger.InfoContext(ctx, "database schema up to date", "server", where, "version", from)
		return nil
	case err != nil:
		var dirty migrate.ErrDirty
		if errors.As(err, &dirty) {
			return fmt.Errorf("postgres: migrate %s: version %d is dirty after a failed migration; fix the schema by hand and force the version: %w",
				where, dirty.Version, err)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("postgres: migrate %s: %w: %w", where, ctxErr, err)
		}
		return fmt.Errorf("postgres: migrate %s: %w", where, err)
	}
	to, _, err := version(m)
	if err != nil {
		return fmt.Errorf("postgres: migrate %s: %w", where, err)
	}
	logger.InfoContext(ctx, "database schema migrated", "server", where, "from_version", from, "to_version", to)
	return nil
}

// version is the current schema version, 0 for an empty database.
func version(m *migrate.Migrate) (uint, bool, error) {
	v, dirty, err := m.Version()
	if errors.Is(err, migrate.ErrNilVersion) {
		return 0, false, nil
	}
	return v, dirty, err
}

// migrateURL converts a postgres:// URL to golang-migrate's pgx5:// and
// names the server for messages.
func migrateURL(raw string) (dbURL, where string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", errors.New("postgres: database URL does not parse as a URL")
	}
	switch strings.ToLower(u.Scheme) {
	case "postgres", "postgresql", "pgx5":
		u.Scheme = "pgx5"
	default:
		return "", "", fmt.Errorf("postgres: database URL scheme must be postgres, postgresql or pgx5 (got %q)", u.Scheme)
	}
	where = u.Host + u.Path
	stripPoolParams(u)
	return u.String(), where, nil
}

// stripPoolParams removes pgxpool's own URL parameters (pool_max_conns,
// pool_min_conns, …): a plain connection would send them to the server as
// run-time parameters, which it rejects.
func stripPoolParams(u *url.URL) {
	q := u.Query()
	for k := range q {
		if strings.HasPrefix(k, "pool_") {
			q.Del(k)
		}
	}
	u.RawQuery = q.Encode()
}

// redactErr removes the password of rawURL from err's text: golang-migrate
// may quote the URL it was given.
func redactErr(err error, rawURL string) string {
	msg := err.Error()
	if u, perr := url.Parse(rawURL); perr == nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}

// migrateLogger sends golang-migrate's per-file lines ("1/u create_orders
// (12ms)") to slog.
type migrateLogger struct {
	ctx    context.Context
	logger *slog.Logger
	where  string
}

func (l migrateLogger) Printf(format string, v ...any) {
	l.logger.InfoContext(l.ctx, "migration applied", "server", l.where,
		"migration", strings.TrimSpace(fmt.Sprintf(format, v...)))
}

func (l migrateLogger) Verbose() bool { return false }
