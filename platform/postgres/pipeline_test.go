package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/postgres"
)

// countingConn counts the writes to the server: each round trip begins
// with one (pgx buffers a statement's or a batch's messages and sends them
// at once).
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// countingPool is a pool of one connection on a database with the
// migrations' tables, whose writes to the server are counted.
func countingPool(t *testing.T) (*pgxpool.Pool, *atomic.Int64) {
	t.Helper()
	url, _ := pgtest.NewDatabase(t, migrations)
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	writes := &atomic.Int64{}
	dialer := &net.Dialer{}
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{Conn: c, writes: writes}, nil
	}
	cfg.AfterConnect = postgres.AfterConnect
	cfg.MaxConns = 1
	// No liveness ping on acquire: it would be a round trip of its own.
	cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool, writes
}

// roundTrips runs fn in InTx twice, the first time to prepare its
// statements, and returns the round trips of the second run.
func roundTrips(t *testing.T, pool *pgxpool.Pool, writes *atomic.Int64, fn func(pgx.Tx) error) int64 {
	t.Helper()
	require.NoError(t, postgres.InTx(t.Context(), pool, fn))
	before := writes.Load()
	require.NoError(t, postgres.InTx(t.Context(), pool, fn))
	return writes.Load() - before
}

func TestPipelinedTransactionRoundTrips(t *testing.T) {
	t.Parallel()
	pool, writes := countingPool(t)
	ctx := t.Context()
	var id atomic.Int64
	insertOrder := func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO orders (id, customer_id) VALUES ($1, 'c')", id.Add(1))
		return err
	}
	appendEvent := func(tx pgx.Tx) error { // as the outbox writer appends
		_, err := postgres.Pipelined(tx).Exec(ctx, "INSERT INTO outbox (aggregate_id, payload) VALUES ($1, $2)", "a", []byte("p"))
		return err
	}
	readVersion := func(tx pgx.Tx) error {
		var v int64
		return tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM orders WHERE customer_id = $1", "c").Scan(&v)
	}
	all := func(fns ...func(pgx.Tx) error) func(pgx.Tx) error {
		return func(tx pgx.Tx) error {
			for _, fn := range fns {
				if err := fn(tx); err != nil {
					return err
				}
			}
			return nil
		}
	}

	// One by one these are BEGIN, the statements and COMMIT: 4, 5, 2, 2.
	for _, tc := range []struct {
		name string
		fn   func(pgx.Tx) error
		want int64
	}{
		{"write and append: BEGIN with the write, the append with COMMIT", all(insertOrder, appendEvent), 2},
		{"read, write and append", all(readVersion, insertOrder, appendEvent), 3},
		{"a read alone", readVersion, 2},
		{"only an append: BEGIN, the append and COMMIT at once", appendEvent, 1},
		{"nothing: no round trip", func(pgx.Tx) error { return nil }, 0},
	} {
		require.Equal(t, tc.want, roundTrips(t, pool, writes, tc.fn), tc.name)
	}

	var orders, events int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&orders))
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM outbox").Scan(&events))
	require.Equal(t, int(id.Load()), orders)
	require.Equal(t, 6, events, "two runs each of three transactions that append")
}

func TestPipelinedTransactionFailures(t *testing.T) {
	t.Parallel()
	pool, _ := countingPool(t)
	ctx := t.Context()
	count := func(table string) int {
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n))
		return n
	}
	insert := func(tx pgx.Tx, id int) error {
		_, err := tx.Exec(ctx, "INSERT INTO orders (id, customer_id) VALUES ($1, 'c')", id)
		return err
	}
	// badAppend violates NOT NULL on payload: the server refuses it.
	badAppend := func(tx pgx.Tx) {
		_, err := postgres.Pipelined(tx).Exec(ctx, "INSERT INTO outbox (aggregate_id, payload) VALUES ($1, NULL)", "a")
		require.NoError(t, err, "queued, not sent")
	}
	// reused: the one connection survived the failure, back in the pool
	// outside any transaction.
	reused := func(t *testing.T) {
		t.Helper()
		require.Equal(t, int64(1), pool.Stat().NewConnsCount(), "no connection was discarded")
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT 1").Scan(&n))
	}

	t.Run("a queued statement's failure is the commit's, and undoes the transaction", func(t *testing.T) {
		err := postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
			require.NoError(t, insert(tx, 1))
			badAppend(tx)
			return nil
		})
		require.Equal(t, "23502", sqlState(err), "%v", err)
		require.Zero(t, count("orders"))
		reused(t)
	})
	t.Run("or the next statement's", func(t *testing.T) {
		err := postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
			badAppend(tx)
			err := insert(tx, 2)
			require.Equal(t, "23502", sqlState(err), "%v", err)
			return err
		})
		require.Error(t, err)
		require.Zero(t, count("orders"))
		reused(t)
	})
	t.Run("a first statement's failure rolls back", func(t *testing.T) {
		err := postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO orders (id) VALUES (3)")
			return err
		})
		require.Equal(t, "23502", sqlState(err), "%v", err)
		reused(t)
	})
	t.Run("a failure the caller ignores fails the commit", func(t *testing.T) {
		err := postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
			require.NoError(t, insert(tx, 4))
			_ = insert(tx, 4) // a duplicate key aborts the transaction
			return nil
		})
		require.ErrorIs(t, err, pgx.ErrTxCommitRollback)
		require.Zero(t, count("orders"))
		reused(t)
	})
	t.Run("rollback drops what is queued", func(t *testing.T) {
		errBoom := errors.New("boom")
		err := postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
			require.NoError(t, insert(tx, 5))
			_, err := postgres.Pipelined(tx).Exec(ctx, "INSERT INTO outbox (aggregate_id, payload) VALUES ('a', 'p')")
			require.NoError(t, err)
			return errBoom
		})
		require.ErrorIs(t, err, errBoom)
		require.Zero(t, count("orders"))
		require.Zero(t, count("outbox"))
		reused(t)
	})
	t.Run("a closed transaction refuses everything", func(t *testing.T) {
		tx, err := postgres.Begin(ctx, pool)
		require.NoError(t, err)
		require.NoError(t, insert(tx, 6))
		require.NoError(t, tx.Commit(ctx))
		require.ErrorIs(t, insert(tx, 7), pgx.ErrTxClosed)
		_, err = postgres.Pipelined(tx).Exec(ctx, "SELECT 1")
		require.ErrorIs(t, err, pgx.ErrTxClosed)
		require.ErrorIs(t, tx.Commit(ctx), pgx.ErrTxClosed)
		require.ErrorIs(t, tx.Rollback(ctx), pgx.ErrTxClosed)
		require.Equal(t, 1, count("orders"))
		reused(t)
	})
}

// The first statement's results come back in the batch that carries BEGIN:
// rows, a row, no row, a savepoint.
func TestPipelinedTransactionFirstStatements(t *testing.T) {
	t.Parallel()
	pool, _ := countingPool(t)
	ctx := t.Context()
	_, err := pool.Exec(ctx, "INSERT INTO orders (id, customer_id) VALUES (1, 'a'), (2, 'b')")
	require.NoError(t, err)

	t.Run("rows read to the end without Close", func(t *testing.T) {
		require.NoError(t, postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, "SELECT customer_id FROM orders ORDER BY id")
			require.NoError(t, err)
			var got []string
			for rows.Next() {
				var c string
				require.NoError(t, rows.Scan(&c))
				got = append(got, c)
			}
			require.NoError(t, rows.Err())
			require.Equal(t, []string{"a", "b"}, got)
			_, err = tx.Exec(ctx, "UPDATE orders SET version = version + 1 WHERE id = 1")
			return err
		}))
	})
	t.Run("a row, then no row", func(t *testing.T) {
		require.NoError(t, postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
			var v int64
			require.NoError(t, tx.QueryRow(ctx, "SELECT version FROM orders WHERE id = $1", 1).Scan(&v))
			require.Equal(t, int64(2), v)
			require.ErrorIs(t, tx.QueryRow(ctx, "SELECT version FROM orders WHERE id = $1", 9).Scan(&v), pgx.ErrNoRows)
			return nil
		}))
		require.NoError(t, postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
			var v int64
			require.ErrorIs(t, tx.QueryRow(ctx, "SELECT version FROM orders WHERE id = $1", 9).Scan(&v), pgx.ErrNoRows)
			_, err := tx.Exec(ctx, "UPDATE orders SET version = version + 1 WHERE id = 2")
			return err
		}))
		var v int64
		require.NoError(t, pool.QueryRow(ctx, "SELECT version FROM orders WHERE id = 2").Scan(&v))
		require.Equal(t, int64(2), v, "a missing row does not abort the transaction")
	})
	t.Run("a savepoint first, after a queued statement", func(t *testing.T) {
		require.NoError(t, postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
			_, err := postgres.Pipelined(tx).Exec(ctx, "INSERT INTO outbox (aggregate_id, payload) VALUES ('kept', 'p')")
			require.NoError(t, err)
			inner := postgres.InTx(ctx, tx, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, "INSERT INTO outbox (aggregate_id, payload) VALUES ('undone', 'p')")
				require.NoError(t, err)
				return errors.New("inner fails")
			})
			require.Error(t, inner)
			return nil
		}))
		rows, err := pool.Query(ctx, "SELECT aggregate_id FROM outbox")
		require.NoError(t, err)
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Equal(t, []string{"kept"}, ids)
	})
}

// BenchmarkTransaction compares PlaceOrder's shape of transaction (a
// write, an outbox append, the commit) sent one statement per round trip,
// as pgx's BeginTx does, and pipelined (InTx on a pool): from one caller
// (the latency of a transaction, mostly the commit's WAL flush) and from
// 32 (the machine's CPU is the limit, so ns/op is its cost).
func BenchmarkTransaction(b *testing.B) {
	_, pool := pgtest.NewDatabase(b, migrations, pgtest.WithMaxConns(32))
	ctx := b.Context()
	var id atomic.Int64
	write := func(tx pgx.Tx, append func(sql string, args ...any) error) error {
		if _, err := tx.Exec(ctx, "INSERT INTO orders (id, customer_id) VALUES ($1, 'c')", id.Add(1)); err != nil {
			return err
		}
		return append("INSERT INTO outbox (aggregate_id, payload) VALUES ($1, $2)", "a", []byte("p"))
	}
	variants := []struct {
		name string
		run  func() error
	}{
		{"one_by_one", func() error {
			tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
			if err != nil {
				return err
			}
			defer func() { _ = tx.Rollback(ctx) }()
			if err := write(tx, func(sql string, args ...any) error {
				_, err := tx.Exec(ctx, sql, args...)
				return err
			}); err != nil {
				return err
			}
			return tx.Commit(ctx)
		}},
		{"pipelined", func() error {
			return postgres.InTx(ctx, pool, func(tx pgx.Tx) error {
				return write(tx, func(sql string, args ...any) error {
					_, err := postgres.Pipelined(tx).Exec(ctx, sql, args...)
					return err
				})
			})
		}},
	}
	for _, callers := range []int{1, 32} {
		for _, v := range variants {
			b.Run(fmt.Sprintf("callers=%d/%s", callers, v.name), func(b *testing.B) {
				if callers == 1 {
					for b.Loop() {
						require.NoError(b, v.run())
					}
					return
				}
				b.SetParallelism(callers / runtime.GOMAXPROCS(0))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := v.run(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
