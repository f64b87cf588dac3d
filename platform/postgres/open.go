package postgres

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/platform/internal/retry"
)

// Open is what a service does with its own database at start-up: create it
// if it is missing (development: one server, a database per service), apply
// the embedded migrations (safe with several replicas starting at once) and
// return a connected pool. An unreachable server is waited for up to maxWait.
func Open(ctx context.Context, url string, migrations fs.FS, logger *slog.Logger, maxWait time.Duration) (*pgxpool.Pool, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	err := retry.Until(ctx, maxWait, func(ctx context.Context) error { return EnsureDatabase(ctx, url) }, isPermanent,
		func(attempt int, err error, wait time.Duration) {
			logger.WarnContext(ctx, "postgres not reachable yet; retrying",
				"attempt", attempt, "retry_in", wait.String(), "error", err.Error())
		})
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := Migrate(ctx, url, migrations, logger); err != nil {
		return nil, err
	}
	return Connect(ctx, url, logger, maxWait)
}
