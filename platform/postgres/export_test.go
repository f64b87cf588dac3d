package postgres

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Open is OpenService with url as the migrating connection too: one role
// both owns and uses the database, as in the tests.
func Open(ctx context.Context, url string, migrations fs.FS, logger *slog.Logger, maxWait time.Duration) (*pgxpool.Pool, error) {
	return OpenService(ctx, url, url, migrations, logger, maxWait)
}

// IsUniqueViolation reports whether err is (or wraps) a PostgreSQL unique
// constraint violation (SQLSTATE 23505).
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == codeUniqueViolation
}

// ConstraintName returns the name of the constraint err violated, or "" when
// err is not a PostgreSQL constraint error.
func ConstraintName(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.ConstraintName
	}
	return ""
}

// Queued is how many statements wait for a batch.
func (g *Group) Queued() int { return g.queue.Len() }
