package servicedb_test

import (
	"bytes"
	"context"
	"log/slog"
	neturl "net/url"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/servicedb"
)

// migrations are a service's, with pgtest.Owner standing in for the
// service's role: it may append to the outbox, nothing more. (The real
// roles' grants are proven in db/roles_test.go.)
var migrations = fstest.MapFS{
	"000001_outbox.up.sql": {Data: []byte(`
CREATE TABLE orders (id BIGINT PRIMARY KEY);
CREATE TABLE outbox (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload BYTEA NOT NULL);
CREATE TABLE outbox_lanes (lane SMALLINT PRIMARY KEY);
GRANT SELECT, INSERT ON orders TO ` + pgtest.Owner + `;
GRANT INSERT ON outbox TO ` + pgtest.Owner + `;
GRANT SELECT ON schema_migrations TO ` + pgtest.Owner + `;`)},
	"000001_outbox.down.sql": {Data: []byte(`DROP TABLE orders, outbox, outbox_lanes;`)},
}

// logs collects a logger's JSON lines.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logs) logger() *slog.Logger { return slog.New(slog.NewJSONHandler(l, nil)) }

func TestOpenChecksTheServicesRole(t *testing.T) {
	t.Parallel()
	pgtest.EnsureOwner(t)

	t.Run("its own role serves, the owner migrates", func(t *testing.T) {
		t.Parallel()
		url, _ := pgtest.NewDatabase(t, nil)
		var l logs
		db := config.Database{URL: pgtest.AsRole(url, pgtest.Owner), MigrateURL: url}
		pool, err := servicedb.Open(t.Context(), "order", false, db, migrations, outbox.WriterExcess, l.logger(), 10*time.Second)
		require.NoError(t, err)
		defer pool.Close()
		require.Contains(t, l.String(), `"msg":"database role checked","role":"`+pgtest.Owner+`"`)
		_, err = pool.Exec(t.Context(), "INSERT INTO outbox (payload) VALUES ('x')")
		require.NoError(t, err)
	})

	t.Run("production mode refuses a role that may read the outbox, naming DATABASE_URL", func(t *testing.T) {
		t.Parallel()
		url, _ := pgtest.NewDatabase(t, nil)
		var l logs
		db := config.Database{URL: url, MigrateURL: url} // the superuser serving
		pool, err := servicedb.Open(t.Context(), "order", false, db, migrations, outbox.WriterExcess, l.logger(), 10*time.Second)
		require.Nil(t, pool)
		require.EqualError(t, err, `DATABASE_URL: role postgres holds more than the service needs (superuser): `+
			`connect as goodgo_order, which holds only the grants of the migrations (README "Database roles")`)
	})

	t.Run("development mode warns about it and serves", func(t *testing.T) {
		t.Parallel()
		url, _ := pgtest.NewDatabase(t, nil)
		var l logs
		db := config.Database{URL: url, MigrateURL: url}
		pool, err := servicedb.Open(t.Context(), "order", true, db, migrations, outbox.WriterExcess, l.logger(), 10*time.Second)
		require.NoError(t, err)
		pool.Close()
		require.Contains(t, l.String(), `"level":"WARN","msg":"DATABASE_URL's role holds more than the service needs; production mode refuses it: connect as goodgo_order","role":"postgres","excess":["superuser"]`)
	})

	t.Run("a role granted more than appending is refused too", func(t *testing.T) {
		t.Parallel()
		url, admin := pgtest.NewDatabase(t, migrations)
		_, err := admin.Exec(t.Context(), "GRANT SELECT, DELETE ON outbox TO "+pgtest.Owner)
		require.NoError(t, err)
		db := config.Database{URL: pgtest.AsRole(url, pgtest.Owner), MigrateURL: url}
		_, err = servicedb.Open(t.Context(), "payment", false, db, migrations, outbox.WriterExcess, nil, 10*time.Second)
		require.ErrorContains(t, err, "DATABASE_URL: role goodgo_test_owner holds more than the service needs (SELECT on outbox, DELETE on outbox): connect as goodgo_payment")
	})

	t.Run("without MIGRATE_DATABASE_URL an old schema says how to migrate", func(t *testing.T) {
		t.Parallel()
		url, _ := pgtest.NewDatabase(t, nil)
		db := config.Database{URL: url}
		_, err := servicedb.Open(t.Context(), "inventory", false, db, migrations, postgres.Privileges.Unrestricted, nil, 300*time.Millisecond)
		require.ErrorContains(t, err, "is at version 0, this binary needs 1: run `inventory migrate` with MIGRATE_DATABASE_URL")
	})
}

// The migrate command migrates as MIGRATE_DATABASE_URL and needs nothing
// else; in production mode it requires it.
func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	pgtest.EnsureOwner(t)
	cmd := servicedb.Command("order", migrations)
	require.Equal(t, "migrate", cmd.Name)
	run := func(vars map[string]string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := cmd.Run("order", func(k string) (string, bool) { v, ok := vars[k]; return v, ok }, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	code, _, stderr := run(nil)
	require.Equal(t, 2, code)
	require.Equal(t, "config: MIGRATE_DATABASE_URL: required: the connection of the database's owner, which migrates it\n", stderr)

	// A database the owner creates itself (CREATEDB), as a migration job would.
	url, admin := pgtest.NewDatabase(t, nil)
	name := pgtest.Prefix + "migratecmd_" + strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", "")
	t.Cleanup(func() {
		_, err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		require.NoError(t, err)
	})
	u, err := neturl.Parse(pgtest.AsRole(url, pgtest.Owner))
	require.NoError(t, err)
	u.Path = "/" + name
	ownerURL := u.String()
	code, stdout, stderr := run(map[string]string{"MIGRATE_DATABASE_URL": ownerURL})
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stdout, `"msg":"database schema migrated"`)
	var owner string
	require.NoError(t, admin.QueryRow(t.Context(), "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", name).Scan(&owner))
	require.Equal(t, pgtest.Owner, owner)

	// Again: nothing to do. In development mode DATABASE_URL's database
	// is migrated as the local superuser by default.
	code, stdout, _ = run(map[string]string{"GOODGO_MODE": "development", "DATABASE_URL": pgtest.AsRole(ownerURL, "goodgo_order")})
	require.Equal(t, 0, code)
	require.Contains(t, stdout, `"msg":"database schema up to date"`)
}
