package pgtest_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/pgtest"
)

var migrations = fstest.MapFS{
	"000001_items.up.sql":   {Data: []byte(`CREATE TABLE items (id INT PRIMARY KEY, name TEXT NOT NULL);`)},
	"000001_items.down.sql": {Data: []byte(`DROP TABLE items;`)},
	"000002_seed.up.sql":    {Data: []byte(`INSERT INTO items VALUES (1, 'seeded');`)},
	"000002_seed.down.sql":  {Data: []byte(`DELETE FROM items WHERE id = 1;`)},
}

func dbName(t *testing.T, dbURL string) string {
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	return strings.TrimPrefix(u.Path, "/")
}

func count(t *testing.T, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, q.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func TestNewDatabaseIsMigratedAndIsolated(t *testing.T) {
	t.Parallel()
	urlA, poolA := pgtest.NewDatabase(t, migrations)
	urlB, poolB := pgtest.NewDatabase(t, migrations)
	require.NotEqual(t, urlA, urlB)
	require.True(t, strings.HasPrefix(dbName(t, urlA), pgtest.Prefix))

	// Both carry the schema and the seeded data.
	require.Equal(t, 1, count(t, poolA, "SELECT count(*) FROM items"))
	require.Equal(t, 1, count(t, poolB, "SELECT count(*) FROM items"))
	require.Equal(t, 2, count(t, poolA, "SELECT version FROM schema_migrations"))

	_, err := poolA.Exec(t.Context(), "INSERT INTO items VALUES (2, 'only in A')")
	require.NoError(t, err)
	require.Equal(t, 2, count(t, poolA, "SELECT count(*) FROM items"))
	require.Equal(t, 1, count(t, poolB, "SELECT count(*) FROM items"))
}

func TestNewDatabaseWithoutMigrationsIsEmpty(t *testing.T) {
	t.Parallel()
	_, pool := pgtest.NewDatabase(t, nil)
	require.Equal(t, 0, count(t, pool, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"))
}

func TestNewDatabaseIsDroppedWhenTheTestEnds(t *testing.T) {
	t.Parallel()
	var name string
	t.Run("uses a database", func(t *testing.T) {
		dbURL, pool := pgtest.NewDatabase(t, migrations)
		name = dbName(t, dbURL)
		require.Equal(t, 1, count(t, pool, "SELECT count(*) FROM pg_database WHERE datname = $1", name))
	})
	conn, err := pgx.Connect(t.Context(), pgtest.ServerURL())
	require.NoError(t, err)
	defer conn.Close(context.Background())
	require.Equal(t, 0, count(t, conn, "SELECT count(*) FROM pg_database WHERE datname = $1", name))
}

func TestTxIsRolledBackWhenTheTestEnds(t *testing.T) {
	t.Parallel()
	_, pool := pgtest.NewDatabase(t, migrations)
	t.Run("writes in a tx", func(t *testing.T) {
		tx := pgtest.Tx(t, pool)
		_, err := tx.Exec(t.Context(), "INSERT INTO items VALUES (42, 'temporary')")
		require.NoError(t, err)
		require.Equal(t, 2, count(t, tx, "SELECT count(*) FROM items"))
		require.Equal(t, 1, count(t, pool, "SELECT count(*) FROM items"), "uncommitted")
	})
	require.Equal(t, 1, count(t, pool, "SELECT count(*) FROM items"))
}

func TestTLSServerCrashKeepsCommitsAndStartsAgain(t *testing.T) {
	srv := pgtest.StartTLSServer(t, pgtest.MaxConnections(30))
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var maxConns string
	require.NoError(t, conn.QueryRow(ctx, "SHOW max_connections").Scan(&maxConns))
	require.Equal(t, "30", maxConns)
	_, err = conn.Exec(ctx, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
	require.NoError(t, err)

	srv.Crash(t)
	_, err = conn.Exec(ctx, "SELECT 1")
	require.Error(t, err, "the open connection is gone")
	_, err = pgx.Connect(ctx, srv.URL("postgres"))
	require.Error(t, err, "nothing listens while crashed")

	srv.Start(t)
	again, err := pgx.Connect(ctx, srv.URL("postgres"))
	require.NoError(t, err)
	defer again.Close(ctx)
	var v int
	require.NoError(t, again.QueryRow(ctx, "SELECT v FROM t").Scan(&v))
	require.Equal(t, 1, v, "the acknowledged commit survived the crash")

	srv.EnsureOwner(t)
	srv.EnsureOwner(t) // twice is harmless
	var owner bool
	require.NoError(t, again.QueryRow(ctx, "SELECT rolcreatedb AND rolcreaterole AND NOT rolsuper FROM pg_roles WHERE rolname = $1", pgtest.Owner).Scan(&owner))
	require.True(t, owner)
}
