package postgres

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/logs"
)

// OpenService is what a service does with its own database at start-up,
// connecting as its own role (url) and returning a connected pool. With
// migrateURL, a connection as the database's owner, it first creates the
// database if it is missing (development: one server, a database per
// service) and applies the embedded migrations (safe with several replicas
// starting at once; see MigrateDatabase). Without it, someone else
// migrates (the binary's migrate command, as a Kubernetes Job): OpenService
// waits for the schema to reach the latest version of migrations and fails
// with a *SchemaError when it does not. Each wait (for an unreachable
// server, for the schema) lasts up to maxWait.
func OpenService(ctx context.Context, url, migrateURL string, migrations fs.FS, logger *slog.Logger, maxWait time.Duration) (*pgxpool.Pool, error) {
	if migrateURL != "" {
		if err := MigrateDatabase(ctx, migrateURL, migrations, logger, maxWait); err != nil {
			return nil, err
		}
	}
	pool, err := Connect(ctx, url, logger, maxWait)
	if err != nil {
		return nil, err
	}
	if migrateURL == "" {
		if err := WaitForSchema(ctx, pool, migrations, logger, maxWait); err != nil {
			pool.Close()
			return nil, err
		}
	}
	return pool, nil
}

// MigrateDatabase creates the database of url if it is missing and applies
// migrations to it (see EnsureDatabase and Migrate), connecting as url's
// role: the owner of the database, allowed to create it and, for the
// migrations that create the services' roles, to create roles. An
// unreachable server is waited for up to maxWait.
func MigrateDatabase(ctx context.Context, url string, migrations fs.FS, logger *slog.Logger, maxWait time.Duration) error {
	logger = logs.OrDiscard(logger)
	err := backoff.Until(ctx, maxWait, func(ctx context.Context) error { return EnsureDatabase(ctx, url) }, isPermanent,
		func(attempt int, err error, wait time.Duration) {
			logger.WarnContext(ctx, "postgres not reachable yet; retrying",
				"attempt", attempt, "retry_in", wait.String(), "error", err.Error())
		})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return Migrate(ctx, url, migrations, logger)
}
