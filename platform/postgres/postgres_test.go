package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/servicetest"
)

// migrations looks like a service's: a table with an idempotency guard, an
// outbox, and a data migration whose double application would show.
var migrations = fstest.MapFS{
	"000001_orders.up.sql": {Data: []byte(`
CREATE TABLE orders (
    id              BIGINT PRIMARY KEY,
    customer_id     TEXT   NOT NULL,
    idempotency_key BYTEA  CONSTRAINT orders_idempotency_key_key UNIQUE,
    version         BIGINT NOT NULL DEFAULT 1
);`)},
	"000001_orders.down.sql": {Data: []byte(`DROP TABLE orders;`)},
	"000002_outbox.up.sql": {Data: []byte(`
CREATE TABLE outbox (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    aggregate_id TEXT  NOT NULL,
    payload      BYTEA NOT NULL
);
CREATE TABLE applied_log (migration INT NOT NULL);
INSERT INTO applied_log VALUES (2);`)},
	"000002_outbox.down.sql": {Data: []byte(`DROP TABLE outbox; DROP TABLE applied_log;`)},
	"000003_seed.up.sql":     {Data: []byte(`INSERT INTO applied_log VALUES (3);`)},
	"000003_seed.down.sql":   {Data: []byte(`DELETE FROM applied_log WHERE migration = 3;`)},
}

func TestConnectFailsWithinBoundWhenUnreachable(t *testing.T) {
	t.Parallel()
	start := time.Now()
	pool, err := postgres.Connect(t.Context(), "postgres://postgres:s3cret-pw@127.0.0.1:1/orders?sslmode=disable", nil, time.Second)
	elapsed := time.Since(start)
	require.Nil(t, pool)
	require.Error(t, err)
	require.Contains(t, err.Error(), "postgres at 127.0.0.1:1/orders unreachable after 1s:")
	require.NotContains(t, err.Error(), "s3cret-pw")
	require.GreaterOrEqual(t, elapsed, time.Second, "retried until maxWait")
	require.Less(t, elapsed, 3*time.Second, "gave up soon after maxWait")
}

func TestConnectStopsWhenContextIsCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := postgres.Connect(ctx, "postgres://postgres@127.0.0.1:1/postgres", nil, time.Minute)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Less(t, time.Since(start), 2*time.Second)
}

func TestConnectFailsFastOnRejectedCredentials(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := postgres.Connect(t.Context(),
		"postgres://goodgo_no_such_role@127.0.0.1:5432/postgres?sslmode=disable", nil, 30*time.Second)
	require.Error(t, err)
	require.Contains(t, err.Error(), "goodgo_no_such_role")
	require.Less(t, time.Since(start), 5*time.Second, "not retried")
}

func TestConnectRejectsMalformedURLWithoutLeakingPassword(t *testing.T) {
	t.Parallel()
	_, err := postgres.Connect(t.Context(), "postgres://u:s3cret-pw@host:notaport/db", nil, time.Second)
	require.ErrorContains(t, err, "postgres: parse database URL")
	require.NotContains(t, err.Error(), "s3cret-pw")
}

func TestConnectPoolSize(t *testing.T) {
	t.Parallel()
	url, _ := pgtest.NewDatabase(t, nil)
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))

	pool, err := postgres.Connect(t.Context(), url, logger, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.EqualValues(t, postgres.DefaultMaxConns, pool.Config().MaxConns)
	require.Contains(t, logs.String(), `"msg":"postgres connected"`)

	sized, err := postgres.Connect(t.Context(), url+"&pool_max_conns=3", logger, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(sized.Close)
	require.EqualValues(t, 3, sized.Config().MaxConns)
}

func TestMigrateConcurrentReplicasApplyEachMigrationOnce(t *testing.T) {
	t.Parallel()
	url, pool := pgtest.NewDatabase(t, nil) // fresh and empty

	const replicas = 4
	var (
		wg   sync.WaitGroup
		errs = make([]error, replicas)
		logs servicetest.Logs
	)
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	start := make(chan struct{})
	for i := range replicas {
		wg.Go(func() {
			<-start
			errs[i] = postgres.Migrate(t.Context(), url, migrations, logger)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "replica %d", i)
	}

	var version int64
	var dirty bool
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT version, dirty FROM schema_migrations").Scan(&version, &dirty))
	require.EqualValues(t, 3, version)
	require.False(t, dirty)
	// Each data migration ran exactly once.
	var applied []int32
	rows, err := pool.Query(t.Context(), "SELECT migration FROM applied_log ORDER BY migration")
	require.NoError(t, err)
	applied, err = pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	require.Equal(t, []int32{2, 3}, applied)

	// One replica migrated, the others found nothing to do.
	out := logs.String()
	require.Equal(t, 1, strings.Count(out, `"msg":"database schema migrated"`), out)
	require.Equal(t, replicas-1, strings.Count(out, `"msg":"database schema up to date"`), out)
	require.Equal(t, 3, strings.Count(out, `"msg":"migration applied"`), out)

	// Running again is a no-op.
	require.NoError(t, postgres.Migrate(t.Context(), url, migrations, nil))
}

func TestMigrateAcceptsPostgresqlAndPgx5Schemes(t *testing.T) {
	t.Parallel()
	url, _ := pgtest.NewDatabase(t, nil)
	require.NoError(t, postgres.Migrate(t.Context(), strings.Replace(url, "postgres://", "postgresql://", 1), migrations, nil))
	require.NoError(t, postgres.Migrate(t.Context(), strings.Replace(url, "postgres://", "pgx5://", 1), migrations, nil))
	err := postgres.Migrate(t.Context(), strings.Replace(url, "postgres://", "mysql://", 1), migrations, nil)
	require.ErrorContains(t, err, `scheme must be postgres, postgresql or pgx5 (got "mysql")`)
}

func TestMigrateReportsDirtyDatabase(t *testing.T) {
	t.Parallel()
	url, _ := pgtest.NewDatabase(t, nil)
	broken := fstest.MapFS{
		"000001_ok.up.sql":     {Data: []byte(`CREATE TABLE t (id INT);`)},
		"000002_broken.up.sql": {Data: []byte(`CREATE TABLE t (id INT);`)}, // already exists
	}
	err := postgres.Migrate(t.Context(), url, broken, nil)
	require.ErrorContains(t, err, "already exists")

	err = postgres.Migrate(t.Context(), url, broken, nil)
	require.ErrorContains(t, err, "version 2 is dirty")
}

func TestEnsureDatabaseIsIdempotentUnderConcurrency(t *testing.T) {
	t.Parallel()
	_, pool := pgtest.NewDatabase(t, nil)
	name := pgtest.Prefix + fmt.Sprintf("ensure_%d", time.Now().UnixNano())
	url := strings.Replace(pgtest.ServerURL(), "/postgres?", "/"+name+"?", 1)
	require.Contains(t, url, name)
	t.Cleanup(func() {
		_, err := pool.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		require.NoError(t, err)
	})

	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { errs[i] = postgres.EnsureDatabase(t.Context(), url) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n))
	require.Equal(t, 1, n)

	// Present already: still fine, and usable.
	require.NoError(t, postgres.EnsureDatabase(t.Context(), url))
	conn, err := pgx.Connect(t.Context(), url)
	require.NoError(t, err)
	require.NoError(t, conn.Close(t.Context()))
}

func TestUniqueViolationHelpers(t *testing.T) {
	t.Parallel()
	_, pool := pgtest.NewDatabase(t, migrations)
	tx := pgtest.Tx(t, pool)
	_, err := tx.Exec(t.Context(), "INSERT INTO orders (id, customer_id, idempotency_key) VALUES (1, 'c', 'k')")
	require.NoError(t, err)
	_, err = tx.Exec(t.Context(), "SAVEPOINT s")
	require.NoError(t, err)

	_, err = tx.Exec(t.Context(), "INSERT INTO orders (id, customer_id, idempotency_key) VALUES (2, 'c', 'k')")
	wrapped := fmt.Errorf("place order: %w", err)
	require.True(t, postgres.IsUniqueViolation(wrapped))
	require.Equal(t, "orders_idempotency_key_key", postgres.ConstraintName(wrapped))

	_, err = tx.Exec(t.Context(), "ROLLBACK TO SAVEPOINT s")
	require.NoError(t, err)
	_, err = tx.Exec(t.Context(), "INSERT INTO orders (id, customer_id) VALUES (1, 'c')")
	require.True(t, postgres.IsUniqueViolation(err))
	require.Equal(t, "orders_pkey", postgres.ConstraintName(err))

	require.False(t, postgres.IsUniqueViolation(errors.New("unique")))
	require.False(t, postgres.IsUniqueViolation(nil))
	require.Empty(t, postgres.ConstraintName(errors.New("x")))
}

func TestInTx(t *testing.T) {
	t.Parallel()
	_, pool := pgtest.NewDatabase(t, migrations)
	count := func() int {
		var n int
		require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM orders").Scan(&n))
		return n
	}
	insert := func(id int) func(pgx.Tx) error {
		return func(tx pgx.Tx) error {
			_, err := tx.Exec(t.Context(), "INSERT INTO orders (id, customer_id) VALUES ($1, 'c')", id)
			return err
		}
	}

	t.Run("commits when fn succeeds", func(t *testing.T) {
		require.NoError(t, postgres.InTx(t.Context(), pool, insert(1)))
		require.Equal(t, 1, count())
	})
	t.Run("rolls back and returns fn's error", func(t *testing.T) {
		errBoom := errors.New("boom")
		err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
			require.NoError(t, insert(2)(tx))
			return errBoom
		})
		require.ErrorIs(t, err, errBoom)
		require.Equal(t, 1, count())
	})
	t.Run("rolls back on panic", func(t *testing.T) {
		require.Panics(t, func() {
			_ = postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
				require.NoError(t, insert(3)(tx))
				panic("boom")
			})
		})
		require.Equal(t, 1, count())
	})
	t.Run("nests as a savepoint", func(t *testing.T) {
		err := postgres.InTx(t.Context(), pool, func(tx pgx.Tx) error {
			require.NoError(t, insert(4)(tx))
			inner := postgres.InTx(t.Context(), tx, func(tx pgx.Tx) error {
				require.NoError(t, insert(5)(tx))
				return errors.New("inner fails")
			})
			require.Error(t, inner)
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, 2, count(), "outer committed, inner rolled back")
	})
}

// A DATABASE_URL may carry pgxpool's own parameters (pool_max_conns): Open
// must not pass them to the server from its plain connections (create
// database, migrate), which would reject them.
func TestOpenAcceptsPoolParameters(t *testing.T) {
	t.Parallel()
	_, admin := pgtest.NewDatabase(t, nil)
	name := pgtest.Prefix + fmt.Sprintf("poolparams_%d", time.Now().UnixNano())
	u, err := url.Parse(pgtest.ServerURL())
	require.NoError(t, err)
	u.Path = "/" + name
	q := u.Query()
	q.Set("pool_max_conns", "3")
	u.RawQuery = q.Encode()
	t.Cleanup(func() {
		_, err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		require.NoError(t, err)
	})

	pool, err := postgres.Open(t.Context(), u.String(), migrations, nil, 10*time.Second)
	require.NoError(t, err)
	defer pool.Close()
	require.EqualValues(t, 3, pool.Config().MaxConns)
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM schema_migrations").Scan(&n))
	require.Equal(t, 1, n)
}
