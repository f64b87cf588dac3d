package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/postgres"
)

// newRowsDB returns a fresh database holding table rows (id, n) with rows
// 1 and 2, and its URL.
func newRowsDB(t *testing.T) (string, *pgxpool.Pool) {
	t.Helper()
	url, pool := pgtest.NewDatabase(t, nil)
	_, err := pool.Exec(t.Context(), `CREATE TABLE rows (id INT PRIMARY KEY, n INT NOT NULL);
INSERT INTO rows VALUES (1, 0), (2, 0);`)
	require.NoError(t, err)
	return url, pool
}

// connect opens a connection of its own (not pooled), closed at test end.
func connect(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func TestIsTransientOnRealFailures(t *testing.T) {
	t.Parallel()
	url, pool := newRowsDB(t)

	t.Run("lock_timeout is transient (55P03)", func(t *testing.T) {
		holder, waiter := connect(t, url), connect(t, url)
		tx, err := holder.Begin(t.Context())
		require.NoError(t, err)
		defer func() { _ = tx.Rollback(context.Background()) }()
		_, err = tx.Exec(t.Context(), "SELECT * FROM rows WHERE id = 1 FOR UPDATE")
		require.NoError(t, err)

		_, err = waiter.Exec(t.Context(), "SET lock_timeout = 100")
		require.NoError(t, err)
		_, err = waiter.Exec(t.Context(), "UPDATE rows SET n = n + 1 WHERE id = 1")
		require.Equal(t, "55P03", sqlState(err), "%v", err)
		require.True(t, postgres.IsTransient(fmt.Errorf("update: %w", err)))
		require.False(t, postgres.IsSerializationFailure(err))
	})

	t.Run("statement_timeout is transient (57014)", func(t *testing.T) {
		conn := connect(t, url)
		_, err := conn.Exec(t.Context(), "SET statement_timeout = 50")
		require.NoError(t, err)
		_, err = conn.Exec(t.Context(), "SELECT pg_sleep(5)")
		require.Equal(t, "57014", sqlState(err), "%v", err)
		require.True(t, postgres.IsTransient(err))
	})

	t.Run("the caller's own deadline or cancellation is not", func(t *testing.T) {
		conn := connect(t, url)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		_, err := conn.Exec(ctx, "SELECT pg_sleep(5)")
		require.Error(t, err)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.False(t, postgres.IsTransient(err), "%v", err)

		ctx, cancel = context.WithCancel(t.Context())
		cancel()
		_, err = pool.Exec(ctx, "SELECT 1")
		require.ErrorIs(t, err, context.Canceled)
		require.False(t, postgres.IsTransient(err), "%v", err)
	})

	t.Run("a terminated backend is transient (57P01)", func(t *testing.T) {
		conn := connect(t, url)
		_, err := pool.Exec(t.Context(), "SELECT pg_terminate_backend($1)", conn.PgConn().PID())
		require.NoError(t, err)
		// The server sends 57P01 and closes; depending on timing pgx reports
		// the error or the closed connection. Both are transient.
		_, err = conn.Exec(t.Context(), "SELECT 1")
		require.Error(t, err)
		require.True(t, postgres.IsTransient(err), "%v (SQLSTATE %q)", err, sqlState(err))
	})

	t.Run("connection refused is transient", func(t *testing.T) {
		_, err := pgx.Connect(t.Context(), "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
		require.Error(t, err)
		require.True(t, postgres.IsTransient(err), "%v", err)
	})

	t.Run("rejected credentials are not", func(t *testing.T) {
		_, err := pgx.Connect(t.Context(), strings.Replace(url, "postgres@", "goodgo_no_such_role@", 1))
		require.Error(t, err)
		require.Equal(t, "28000", sqlState(err), "%v", err)
		require.False(t, postgres.IsTransient(err))
	})

	t.Run("a closed pool is not", func(t *testing.T) {
		closed, err := pgxpool.New(t.Context(), url)
		require.NoError(t, err)
		closed.Close()
		_, err = closed.Exec(t.Context(), "SELECT 1")
		require.Error(t, err)
		require.False(t, postgres.IsTransient(err), "%v", err)
	})

	t.Run("a constraint violation is not", func(t *testing.T) {
		_, err := pool.Exec(t.Context(), "INSERT INTO rows VALUES (1, 0)")
		require.True(t, postgres.IsUniqueViolation(err))
		require.False(t, postgres.IsTransient(err))
		require.False(t, postgres.IsSerializationFailure(err))
	})
}

func TestIsSerializationFailureOnRealConflicts(t *testing.T) {
	t.Parallel()
	url, _ := newRowsDB(t)

	t.Run("a deadlock (40P01)", func(t *testing.T) {
		a, b := connect(t, url), connect(t, url)
		for _, c := range []*pgx.Conn{a, b} {
			_, err := c.Exec(t.Context(), "SET deadlock_timeout = '100ms'")
			require.NoError(t, err)
		}
		txA, err := a.Begin(t.Context())
		require.NoError(t, err)
		defer func() { _ = txA.Rollback(context.Background()) }()
		txB, err := b.Begin(t.Context())
		require.NoError(t, err)
		defer func() { _ = txB.Rollback(context.Background()) }()
		_, err = txA.Exec(t.Context(), "UPDATE rows SET n = n + 1 WHERE id = 1")
		require.NoError(t, err)
		_, err = txB.Exec(t.Context(), "UPDATE rows SET n = n + 1 WHERE id = 2")
		require.NoError(t, err)

		// Each now waits for the row the other holds: the server picks a
		// victim, and the survivor's update goes through.
		errA := make(chan error, 1)
		go func() {
			_, err := txA.Exec(t.Context(), "UPDATE rows SET n = n + 1 WHERE id = 2")
			if err != nil {
				_ = txA.Rollback(context.Background()) // let B go on
			}
			errA <- err
		}()
		_, errB := txB.Exec(t.Context(), "UPDATE rows SET n = n + 1 WHERE id = 1")
		if errB != nil {
			_ = txB.Rollback(context.Background())
		}
		errs := []error{<-errA, errB}

		deadlocks := 0
		for _, err := range errs {
			if err == nil {
				continue
			}
			require.Equal(t, "40P01", sqlState(err), "%v", err)
			require.True(t, postgres.IsSerializationFailure(fmt.Errorf("tx: %w", err)))
			require.False(t, postgres.IsTransient(err), "a deadlock retries the transaction, not the call")
			deadlocks++
		}
		require.Equal(t, 1, deadlocks, "one victim: %v", errs)
	})

	t.Run("a serialization failure (40001)", func(t *testing.T) {
		a, b := connect(t, url), connect(t, url)
		serializable := pgx.TxOptions{IsoLevel: pgx.Serializable}
		txA, err := a.BeginTx(t.Context(), serializable)
		require.NoError(t, err)
		defer func() { _ = txA.Rollback(context.Background()) }()
		txB, err := b.BeginTx(t.Context(), serializable)
		require.NoError(t, err)
		defer func() { _ = txB.Rollback(context.Background()) }()

		// Write skew: each reads the sum, then writes a row the other read.
		var sum int
		require.NoError(t, txA.QueryRow(t.Context(), "SELECT sum(n) FROM rows").Scan(&sum))
		require.NoError(t, txB.QueryRow(t.Context(), "SELECT sum(n) FROM rows").Scan(&sum))
		_, err = txA.Exec(t.Context(), "UPDATE rows SET n = n + 1 WHERE id = 1")
		require.NoError(t, err)
		require.NoError(t, txA.Commit(t.Context()))
		// The server may detect the cycle at B's write or at its commit.
		_, err = txB.Exec(t.Context(), "UPDATE rows SET n = n + 1 WHERE id = 2")
		if err == nil {
			err = txB.Commit(t.Context())
		}
		require.Equal(t, "40001", sqlState(err), "%v", err)
		require.True(t, postgres.IsSerializationFailure(err))
		require.False(t, postgres.IsTransient(err))
	})
}

// TestErrorClassificationBySQLState covers the codes a test cannot easily
// provoke on a shared server (too many connections, crash recovery).
func TestErrorClassificationBySQLState(t *testing.T) {
	t.Parallel()
	tests := []struct {
		code                    string
		transient, serializable bool
	}{
		{"08000", true, false}, // connection_exception
		{"08006", true, false}, // connection_failure
		{"53000", true, false}, // insufficient_resources
		{"53100", true, false}, // disk_full
		{"53300", true, false}, // too_many_connections
		{"57P01", true, false}, // admin_shutdown
		{"57P02", true, false}, // crash_shutdown
		{"57P03", true, false}, // cannot_connect_now
		{"55P03", true, false}, // lock_not_available
		{"57014", true, false}, // query_canceled
		{"40001", false, true}, // serialization_failure
		{"40P01", false, true}, // deadlock_detected
		{"23505", false, false},
		{"42601", false, false},
		{"28P01", false, false},
		{"57P04", false, false}, // database_dropped
		{"55000", false, false}, // object_not_in_prerequisite_state
	}
	for _, tt := range tests {
		err := fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: tt.code})
		require.Equal(t, tt.transient, postgres.IsTransient(err), tt.code)
		require.Equal(t, tt.serializable, postgres.IsSerializationFailure(err), tt.code)
	}
	require.False(t, postgres.IsTransient(nil))
	require.False(t, postgres.IsSerializationFailure(nil))
	require.False(t, postgres.IsTransient(errors.New("something else")))
	require.True(t, postgres.IsTransient(fmt.Errorf("read: %w", io.ErrUnexpectedEOF)))
}

func TestConnectSetsSessionTimeouts(t *testing.T) {
	t.Parallel()
	url, _ := pgtest.NewDatabase(t, nil)
	show := func(pool *pgxpool.Pool, name string) string {
		var v string
		require.NoError(t, pool.QueryRow(t.Context(), "SHOW "+name).Scan(&v))
		return v
	}
	open := func(url string) *pgxpool.Pool {
		pool, err := postgres.Connect(t.Context(), url, nil, 5*time.Second)
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		return pool
	}

	t.Run("defaults", func(t *testing.T) {
		pool := open(url)
		require.Equal(t, "15s", show(pool, "statement_timeout"))
		require.Equal(t, "10s", show(pool, "lock_timeout"))
	})
	t.Run("URL parameters override them", func(t *testing.T) {
		pool := open(url + "&statement_timeout=2500&lock_timeout=0")
		require.Equal(t, "2500ms", show(pool, "statement_timeout"))
		require.Equal(t, "0", show(pool, "lock_timeout"))
	})
	t.Run("options override them", func(t *testing.T) {
		pool := open(url + "&options=-c%20lock_timeout%3D3s")
		require.Equal(t, "15s", show(pool, "statement_timeout"))
		require.Equal(t, "3s", show(pool, "lock_timeout"))
	})
	t.Run("the timeout applies", func(t *testing.T) {
		pool := open(url + "&statement_timeout=50")
		_, err := pool.Exec(t.Context(), "SELECT pg_sleep(5)")
		require.Equal(t, "57014", sqlState(err), "%v", err)
		require.True(t, postgres.IsTransient(err))
	})
}

func TestInTxIsReadCommittedWhateverTheDefault(t *testing.T) {
	t.Parallel()
	url, _ := pgtest.NewDatabase(t, nil)
	// A server, role or URL whose default is SERIALIZABLE.
	serializableURL := url + "&default_transaction_isolation=serializable"
	pool, err := postgres.Connect(t.Context(), serializableURL, nil, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	conn := connect(t, serializableURL)

	isolation := func(tx pgx.Tx) string {
		var level string
		require.NoError(t, tx.QueryRow(t.Context(), "SHOW transaction_isolation").Scan(&level))
		return level
	}
	for name, db := range map[string]postgres.Beginner{"pool": pool, "conn": conn} {
		t.Run(name, func(t *testing.T) {
			var got string
			require.NoError(t, postgres.InTx(t.Context(), db, func(tx pgx.Tx) error {
				got = isolation(tx)
				return nil
			}))
			require.Equal(t, "read committed", got)
		})
	}
	t.Run("a savepoint keeps the outer transaction's level", func(t *testing.T) {
		outer, err := pool.Begin(t.Context()) // the server default: serializable
		require.NoError(t, err)
		defer func() { _ = outer.Rollback(context.Background()) }()
		var got string
		require.NoError(t, postgres.InTx(t.Context(), outer, func(tx pgx.Tx) error {
			got = isolation(tx)
			return nil
		}))
		require.Equal(t, "serializable", got)
	})
}
