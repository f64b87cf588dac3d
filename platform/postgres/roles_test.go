package postgres_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/servicetest"
)

func TestLatestVersionIsTheHighestMigration(t *testing.T) {
	t.Parallel()
	v, err := postgres.LatestVersion(migrations)
	require.NoError(t, err)
	require.EqualValues(t, 3, v)

	v, err = postgres.LatestVersion(fstest.MapFS{})
	require.NoError(t, err)
	require.EqualValues(t, 0, v)
}

// A service that does not migrate (no migrateURL) waits for someone else
// to: it serves once the schema has reached its latest migration.
func TestOpenServiceWithoutMigrateURLWaitsForTheSchema(t *testing.T) {
	t.Parallel()
	url, _ := pgtest.NewDatabase(t, nil) // empty: nobody migrated yet
	var logs servicetest.Logs
	logger := slog.New(slog.NewJSONHandler(&logs, nil))

	type result struct {
		err error
	}
	done := make(chan result, 1)
	go func() {
		pool, err := postgres.OpenService(t.Context(), url, "", migrations, logger, 20*time.Second)
		if err == nil {
			pool.Close()
		}
		done <- result{err}
	}()
	require.Eventually(t, func() bool {
		return strings.Contains(logs.String(), `"msg":"waiting for the database schema to be migrated"`)
	}, 10*time.Second, 10*time.Millisecond)
	select {
	case r := <-done:
		t.Fatalf("OpenService returned before the migration: %v", r.err)
	default:
	}

	require.NoError(t, postgres.MigrateDatabase(t.Context(), url, migrations, nil, 5*time.Second)) // the migration job
	select {
	case r := <-done:
		require.NoError(t, r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("OpenService did not return after the migration")
	}
	require.Contains(t, logs.String(), `"msg":"database schema ready"`)
}

// A schema older than the binary's migrations is an error once the wait
// is over, saying which versions.
func TestOpenServiceGivesUpOnAnOldSchema(t *testing.T) {
	t.Parallel()
	url, _ := pgtest.NewDatabase(t, migrations) // at version 3
	newer := maps.Clone(migrations)
	newer["000004_more.up.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE more (id INT);`)}

	start := time.Now()
	pool, err := postgres.OpenService(t.Context(), url, "", newer, nil, time.Second)
	require.Nil(t, pool)
	var schemaErr *postgres.SchemaError
	require.True(t, errors.As(err, &schemaErr), "got %v", err)
	require.EqualValues(t, 3, schemaErr.Have)
	require.EqualValues(t, 4, schemaErr.Want)
	require.Contains(t, err.Error(), "is at version 3, this binary needs 4")
	require.Less(t, time.Since(start), 5*time.Second)

	// The same binary's migrations are enough, and so is an older binary's.
	for _, m := range []fstest.MapFS{migrations, {"000001_orders.up.sql": migrations["000001_orders.up.sql"]}} {
		pool, err := postgres.OpenService(t.Context(), url, "", m, nil, time.Second)
		require.NoError(t, err)
		pool.Close()
	}
}

func TestWaitForSchemaReportsADirtySchema(t *testing.T) {
	t.Parallel()
	url, pool := pgtest.NewDatabase(t, nil)
	broken := fstest.MapFS{
		"000001_ok.up.sql":     {Data: []byte(`CREATE TABLE t (id INT);`)},
		"000002_broken.up.sql": {Data: []byte(`CREATE TABLE t (id INT);`)},
	}
	require.Error(t, postgres.Migrate(t.Context(), url, broken, nil))
	err := postgres.WaitForSchema(t.Context(), pool, broken, nil, 300*time.Millisecond)
	var schemaErr *postgres.SchemaError
	require.True(t, errors.As(err, &schemaErr), "got %v", err)
	require.True(t, schemaErr.Dirty)
	require.Contains(t, err.Error(), "dirty at version 2")
}

// ReadPrivileges sees grants to the role, to PUBLIC and to roles it is a
// member of, and tables owned through membership. The roles live in a
// transaction that is rolled back: roles are cluster-wide.
func TestReadPrivileges(t *testing.T) {
	t.Parallel()
	_, pool := pgtest.NewDatabase(t, migrations)

	t.Run("a superuser bypasses every check", func(t *testing.T) {
		p, err := postgres.ReadPrivileges(t.Context(), pool)
		require.NoError(t, err)
		require.True(t, p.Superuser)
		require.Equal(t, []string{"superuser"}, p.Unrestricted())
		require.Equal(t, []string{"superuser"}, p.Beyond(map[string][]string{"orders": {postgres.Select}}))
		require.Len(t, p.Tables["outbox"], 7, "every privilege")
	})

	t.Run("a role holds its grants, PUBLIC's and its groups'", func(t *testing.T) {
		tx := pgtest.Tx(t, pool)
		role, group := randomRole(), randomRole()
		for _, sql := range []string{
			"CREATE ROLE " + role,
			"CREATE ROLE " + group,
			"GRANT " + group + " TO " + role,
			"GRANT SELECT, UPDATE ON orders TO " + role,
			"GRANT INSERT ON outbox TO " + role,
			"GRANT SELECT ON outbox TO PUBLIC",
			"ALTER TABLE applied_log OWNER TO " + group,
			"SET LOCAL ROLE " + role,
		} {
			_, err := tx.Exec(t.Context(), sql)
			require.NoError(t, err, sql)
		}
		p, err := postgres.ReadPrivileges(t.Context(), tx)
		require.NoError(t, err)
		require.Equal(t, role, p.Role)
		require.False(t, p.Superuser)
		require.Equal(t, map[string][]string{
			"orders":            {postgres.Select, postgres.Update},
			"outbox":            {postgres.Select, postgres.Insert},
			"applied_log":       {postgres.Select, postgres.Insert, postgres.Update, postgres.Delete, postgres.Truncate, postgres.References, postgres.Trigger},
			"schema_migrations": nil,
		}, p.Tables)
		require.Equal(t, []string{"applied_log"}, p.Owned)
		require.Equal(t, []string{"owner of applied_log"}, p.Unrestricted())
		require.Equal(t, []string{"owner of applied_log", "SELECT on outbox"},
			p.Beyond(map[string][]string{"orders": {postgres.Select, postgres.Update}, "outbox": {postgres.Insert}}))
	})
}

// randomRole names a role that only ever exists in a rolled-back
// transaction.
func randomRole() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "goodgo_test_role_" + hex.EncodeToString(b) // a plain identifier: no quoting needed
}
