package postgres_test

import (
	"crypto/x509"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/postgres"
)

// withURL returns raw with host (if not empty) and the query parameters
// kv (name, value, …; an empty value deletes) changed.
func withURL(t *testing.T, raw, host string, kv ...string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	if host != "" {
		u.Host = host + ":" + u.Port()
	}
	q := u.Query()
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == "" {
			q.Del(kv[i])
		} else {
			q.Set(kv[i], kv[i+1])
		}
	}
	u.RawQuery = q.Encode()
	return u.String()
}

func TestTLSVerifyFull(t *testing.T) {
	t.Parallel()
	srv := pgtest.StartTLSServer(t)

	t.Run("Open creates, migrates and connects over verified TLS", func(t *testing.T) {
		t.Parallel()
		// pool_max_conns checks that the TLS parameters survive the
		// rewriting of the URL for EnsureDatabase and Migrate.
		dbURL := withURL(t, srv.URL("goodgo_tls"), "", "pool_max_conns", "2")
		pool, err := postgres.Open(t.Context(), dbURL, migrations, nil, 10*time.Second)
		require.NoError(t, err)
		t.Cleanup(pool.Close)

		var ssl bool
		var version string
		require.NoError(t, pool.QueryRow(t.Context(),
			"SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &version))
		require.True(t, ssl)
		require.Contains(t, []string{"TLSv1.2", "TLSv1.3"}, version)
		var applied int
		require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM applied_log").Scan(&applied))
		require.Equal(t, 2, applied, "migrations 2 and 3 applied")

		// Again, as a restarted replica would: nothing left to do.
		require.NoError(t, postgres.Migrate(t.Context(), dbURL, migrations, nil))
		require.NoError(t, postgres.EnsureDatabase(t.Context(), dbURL))
	})

	t.Run("a connection without TLS is refused at once", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		dbURL := withURL(t, srv.URL("postgres"), "", "sslmode", "disable", "sslrootcert", "")
		pool, err := postgres.Connect(t.Context(), dbURL, nil, 10*time.Second)
		require.Nil(t, pool)
		require.ErrorContains(t, err, "no encryption")
		require.Less(t, time.Since(start), 5*time.Second, "not retried")

		_, err = postgres.Open(t.Context(), withURL(t, dbURL, "", "sslmode", "disable"), migrations, nil, 10*time.Second)
		require.ErrorContains(t, err, "no encryption")
	})

	t.Run("a server certificate from another CA is refused at once", func(t *testing.T) {
		t.Parallel()
		other, err := mtls.NewCA("another CA", time.Hour)
		require.NoError(t, err)
		otherFile := filepath.Join(t.TempDir(), "other-ca.crt")
		require.NoError(t, os.WriteFile(otherFile, other.PEM, 0o600))

		start := time.Now()
		dbURL := withURL(t, srv.URL("postgres"), "", "sslrootcert", otherFile)
		pool, err := postgres.Connect(t.Context(), dbURL, nil, 10*time.Second)
		require.Nil(t, pool)
		var unknown x509.UnknownAuthorityError
		require.ErrorAs(t, err, &unknown)
		require.Less(t, time.Since(start), 5*time.Second, "not retried")

		_, err = postgres.Open(t.Context(), withURL(t, srv.URL("goodgo_tls_other_ca"), "", "sslrootcert", otherFile), migrations, nil, 10*time.Second)
		require.ErrorAs(t, err, &unknown)
	})

	t.Run("a server certificate for another host name is refused at once", func(t *testing.T) {
		t.Parallel()
		// The certificate names 127.0.0.1 only; localhost is the same server.
		start := time.Now()
		pool, err := postgres.Connect(t.Context(), withURL(t, srv.URL("postgres"), "localhost"), nil, 10*time.Second)
		require.Nil(t, pool)
		var hostname x509.HostnameError
		require.ErrorAs(t, err, &hostname)
		require.Less(t, time.Since(start), 5*time.Second, "not retried")
	})

	t.Run("sslmode=require encrypts without checking the certificate", func(t *testing.T) {
		t.Parallel()
		// What verify-full adds: require takes any certificate, here one
		// that does not name the host dialled.
		pool, err := postgres.Connect(t.Context(), withURL(t, srv.URL("postgres"), "localhost", "sslmode", "require", "sslrootcert", ""), nil, 10*time.Second)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		var ssl bool
		require.NoError(t, pool.QueryRow(t.Context(), "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl))
		require.True(t, ssl)
	})
}
