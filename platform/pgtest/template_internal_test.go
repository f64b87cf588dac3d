package pgtest

import (
	"context"
	"crypto/rand"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// uniqueMigrations returns migrations no other test or run shares, and drops
// their template when the test ends.
func uniqueMigrations(t *testing.T) (fstest.MapFS, string) {
	m := fstest.MapFS{
		"000001_t.up.sql": {Data: []byte("CREATE TABLE t (id INT); -- " + rand.Text())},
	}
	sum, err := hashFS(m)
	require.NoError(t, err)
	name := Prefix + "tpl_" + sum[:16]
	adm, err := admin()
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := adm.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		require.NoError(t, err)
	})
	return m, name
}

// Parallel test binaries (go test ./...) build a template once: they
// serialise on an advisory lock and the later ones find it complete.
func TestEnsureTemplateConcurrentProcesses(t *testing.T) {
	t.Parallel()
	m, name := uniqueMigrations(t)
	adm, err := admin()
	require.NoError(t, err)
	sum, err := hashFS(m)
	require.NoError(t, err)

	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = ensureTemplate(t.Context(), adm, name, m, sum) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}

	_, pool := NewDatabase(t, m)
	var version int
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT version FROM schema_migrations").Scan(&version))
	require.Equal(t, 1, version)
}

// A template left half-built by a crashed run is rebuilt, not used.
func TestIncompleteTemplateIsRebuilt(t *testing.T) {
	t.Parallel()
	m, name := uniqueMigrations(t)
	adm, err := admin()
	require.NoError(t, err)
	_, err = adm.Exec(t.Context(), "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	require.NoError(t, err)

	_, pool := NewDatabase(t, m)
	var tables int
	require.NoError(t, pool.QueryRow(t.Context(),
		"SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('t', 'schema_migrations')").Scan(&tables))
	require.Equal(t, 2, tables)
}

func TestHashFSDependsOnNamesAndContents(t *testing.T) {
	a, err := hashFS(fstest.MapFS{"1.up.sql": {Data: []byte("x")}})
	require.NoError(t, err)
	b, err := hashFS(fstest.MapFS{"1.up.sql": {Data: []byte("y")}})
	require.NoError(t, err)
	c, err := hashFS(fstest.MapFS{"2.up.sql": {Data: []byte("x")}})
	require.NoError(t, err)
	again, err := hashFS(fstest.MapFS{"1.up.sql": {Data: []byte("x")}})
	require.NoError(t, err)
	require.Equal(t, a, again)
	require.NotEqual(t, a, b)
	require.NotEqual(t, a, c)
}

func TestNewDatabaseReusesOneSealedTemplate(t *testing.T) {
	t.Parallel()
	m, name := uniqueMigrations(t)
	templateOID := func() (oid uint32, allowConn bool, comment string) {
		adm, err := admin()
		require.NoError(t, err)
		require.NoError(t, adm.QueryRow(t.Context(), `
			SELECT oid, datallowconn, shobj_description(oid, 'pg_database')
			FROM pg_database WHERE datname = $1`, name).Scan(&oid, &allowConn, &comment))
		return oid, allowConn, comment
	}

	_, _ = NewDatabase(t, m)
	first, allowConn, comment := templateOID()
	// Marked complete, and sealed so that copying it never fails on a
	// stray session.
	require.Equal(t, templateComplete, comment)
	require.False(t, allowConn)

	_, _ = NewDatabase(t, m)
	again, _, _ := templateOID()
	require.Equal(t, first, again, "not rebuilt")

	// Another process (no in-memory cache) reuses it too.
	sum, err := hashFS(m)
	require.NoError(t, err)
	adm, err := admin()
	require.NoError(t, err)
	require.NoError(t, ensureTemplate(t.Context(), adm, name, m, sum))
	again, _, _ = templateOID()
	require.Equal(t, first, again, "not rebuilt")
}
