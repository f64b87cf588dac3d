package postgres

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/logs"
)

// codeUndefinedTable is the SQLSTATE of a schema not migrated yet.
const codeUndefinedTable = "42P01"

// LatestVersion is the highest version among migrations (golang-migrate
// files NNNNNN_name.up.sql at the root of the fs.FS), 0 when there are none.
func LatestVersion(migrations fs.FS) (uint, error) {
	src, err := iofs.New(migrations, ".")
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return 0, fmt.Errorf("postgres: migrations source: %w", err)
	}
	defer func() { _ = src.Close() }()
	v, err := src.First()
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: migrations source: %w", err)
	}
	for {
		next, err := src.Next(v)
		if errors.Is(err, os.ErrNotExist) {
			return v, nil
		}
		if err != nil {
			return 0, fmt.Errorf("postgres: migrations source: %w", err)
		}
		v = next
	}
}

// SchemaVersion reads the version golang-migrate recorded in the database
// (its schema_migrations table): 0 when nothing was migrated yet. dirty
// reports a migration that failed half-way.
func SchemaVersion(ctx context.Context, q Querier) (version uint, dirty bool, err error) {
	var v int64
	err = q.QueryRow(ctx, "SELECT version, dirty FROM schema_migrations LIMIT 1").Scan(&v, &dirty)
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrNoRows), errors.As(err, &pgErr) && pgErr.Code == codeUndefinedTable:
		return 0, false, nil
	case err != nil:
		return 0, false, err
	case v < 0:
		return 0, dirty, nil
	}
	return uint(v), dirty, nil
}

// Querier runs queries: a *pgxpool.Pool, a *pgx.Conn or a pgx.Tx.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// SchemaError reports a database whose schema is older than the binary's
// migrations after WaitForSchema gave up: someone has to migrate it.
type SchemaError struct {
	// Where names the server as host:port/database.
	Where string
	// Have is the database's version (0: never migrated), Want the
	// binary's latest migration; Dirty reports a failed migration.
	Have, Want uint
	Dirty      bool
	// Err is why the version could not be read, if it could not.
	Err error
}

func (e *SchemaError) Error() string {
	switch {
	case e.Err != nil:
		return fmt.Sprintf("postgres: schema of %s not readable (this binary needs version %d): %v", e.Where, e.Want, e.Err)
	case e.Dirty:
		return fmt.Sprintf("postgres: schema of %s is dirty at version %d after a failed migration (this binary needs %d)", e.Where, e.Have, e.Want)
	}
	return fmt.Sprintf("postgres: schema of %s is at version %d, this binary needs %d", e.Where, e.Have, e.Want)
}

func (e *SchemaError) Unwrap() error { return e.Err }

// WaitForSchema waits up to maxWait until the database of pool has been
// migrated to at least the latest version of migrations by someone else (a
// migration job, or a replica that migrates), checking with a backoff capped
// at 2 s. A newer schema is fine: migrations are expand-only, so that a new
// schema serves the previous release during a rolling update. It gives up
// with a *SchemaError. The role of pool needs SELECT on schema_migrations;
// while it lacks it (the grant comes with the migrations) the schema counts
// as not migrated yet.
func WaitForSchema(ctx context.Context, pool *pgxpool.Pool, migrations fs.FS, logger *slog.Logger, maxWait time.Duration) error {
	logger = logs.OrDiscard(logger)
	want, err := LatestVersion(migrations)
	if err != nil {
		return err
	}
	where := Describe(pool.Config().ConnConfig.Config)
	last := &SchemaError{Where: where, Want: want}
	check := func(ctx context.Context) error {
		have, dirty, err := SchemaVersion(ctx, pool)
		switch {
		case err != nil:
			// Permission denied (42501) too: the migration granting SELECT
			// on schema_migrations has not run yet.
			last = &SchemaError{Where: where, Want: want, Err: err}
			return last
		case dirty || have < want:
			last = &SchemaError{Where: where, Have: have, Want: want, Dirty: dirty}
			return last
		}
		logger.InfoContext(ctx, "database schema ready", "server", where, "version", have, "needed", want)
		return nil
	}
	logged := false
	err = backoff.Until(ctx, maxWait, check, func(error) bool { return false }, func(_ int, err error, _ time.Duration) {
		if !logged {
			logged = true
			logger.WarnContext(ctx, "waiting for the database schema to be migrated", "server", where, "reason", err.Error())
		}
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, backoff.ErrTimeout):
		return last
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("postgres: waiting for the schema of %s: %w", where, ctxErr)
	}
	return err
}
