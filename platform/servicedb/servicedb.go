// Package servicedb is how a GoodGo binary treats the PostgreSQL database
// it owns: it serves as its own login role (DATABASE_URL), which holds only
// the grants its migrations give it, and leaves creating and migrating the
// database to the database's owner (MIGRATE_DATABASE_URL): at start-up,
// or, when that is unset, in a separate run of its migrate command (a
// Kubernetes Job), whose schema it then waits for. At start it checks that
// its role holds no more than it needs: a warning in development mode, a
// refusal in production mode. README "Database roles" has the whole story.
package servicedb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/postgres"
)

// Excess names what a role holds beyond what the service needs (see
// outbox.WriterExcess, postgres.Privileges.Unrestricted); nil when nothing.
type Excess func(postgres.Privileges) []string

// Open returns a pool on the service's database as its own role (db.URL)
// once the schema is migrated: by Open itself with db.MigrateURL, or by
// someone else, waited for up to maxWait (a schema still behind then is an
// error that says how to migrate). Then it checks the role with excess: a
// role holding more than the service needs (a superuser, an owner, a role
// that may read the outbox) is refused in production mode with an error
// naming DATABASE_URL, and logged as a warning in development mode.
func Open(ctx context.Context, service string, dev bool, db config.Database, migrations fs.FS, excess Excess,
	logger *slog.Logger, maxWait time.Duration,
) (*pgxpool.Pool, error) {
	pool, err := postgres.OpenService(ctx, db.URL, db.MigrateURL, migrations, logger, maxWait)
	var schemaErr *postgres.SchemaError
	if errors.As(err, &schemaErr) {
		return nil, fmt.Errorf("%w: run `%s migrate` with MIGRATE_DATABASE_URL (the database owner's connection), "+
			"or set MIGRATE_DATABASE_URL so that %s migrates at start", err, service, service)
	}
	if err != nil {
		return nil, err
	}
	if err := CheckRole(ctx, pool, service, dev, excess, logger); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// CheckRole reads the privileges of pool's role and judges them with
// excess: nil error when it holds no more than the service needs, or in
// development mode, where the excess is logged as a warning; in production
// mode an error naming DATABASE_URL and the role to use instead.
func CheckRole(ctx context.Context, pool *pgxpool.Pool, service string, dev bool, excess Excess, logger *slog.Logger) error {
	p, err := postgres.ReadPrivileges(ctx, pool)
	if err != nil {
		return err
	}
	extra := excess(p)
	if len(extra) == 0 {
		logger.InfoContext(ctx, "database role checked", "role", p.Role)
		return nil
	}
	want := config.RoleName(service)
	if dev {
		logger.WarnContext(ctx, "DATABASE_URL's role holds more than the service needs; production mode refuses it: connect as "+want,
			"role", p.Role, "excess", extra)
		return nil
	}
	return fmt.Errorf("DATABASE_URL: role %s holds more than the service needs (%s): connect as %s, "+
		"which holds only the grants of the migrations (README \"Database roles\")", p.Role, strings.Join(extra, ", "), want)
}

// Command is the binary's migrate command: it creates the database of
// MIGRATE_DATABASE_URL if it is missing and applies migrations as that
// role, the database's owner, then exits. It needs only
// MIGRATE_DATABASE_URL (in development mode, DATABASE_URL's database as
// the local superuser by default), LOG_LEVEL and STARTUP_TIMEOUT, not the
// server's credentials: a migration job runs it with the owner's secret
// alone.
func Command(service string, migrations fs.FS) lifecycle.Command {
	type settings struct {
		common config.Common
		db     config.Database
	}
	load := func(lookup lifecycle.Lookup) (settings, error) {
		e := config.NewEnv(lookup)
		s := settings{common: config.LoadCommon(e, service, "127.0.0.1:0", "127.0.0.1:0")}
		s.db = config.LoadDatabase(e, service, s.common.Dev)
		if s.db.MigrateURL == "" {
			e.Invalid("MIGRATE_DATABASE_URL", "required: the connection of the database's owner, which migrates it")
		}
		return s, e.Err()
	}
	run := func(ctx context.Context, s settings, stdout io.Writer, _ lifecycle.Lookup) error {
		logger := logs.NewLogger(stdout, service, s.common.LogLevel)
		return postgres.MigrateDatabase(ctx, s.db.MigrateURL, migrations, logger, s.common.StartupTimeout)
	}
	return lifecycle.NewCommand("migrate", "create the database if missing and apply its migrations (MIGRATE_DATABASE_URL), then exit", load, run)
}
