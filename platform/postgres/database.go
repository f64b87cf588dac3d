package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SQLSTATE codes the helpers look for.
const (
	codeUniqueViolation   = "23505"
	codeDuplicateDatabase = "42P04"
)

// EnsureDatabase creates the database named in url if it does not exist,
// connecting as the same user to the "postgres" database of the same
// server. Concurrent callers are fine: losing the race to create it is
// success. Meant for development, where one server hosts every service's
// database; production databases are provisioned outside the services.
func EnsureDatabase(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(withoutPoolParams(url))
	if err != nil {
		return fmt.Errorf("postgres: parse database URL: %w", err)
	}
	name := cfg.Database
	if name == "" || name == "postgres" {
		return nil
	}
	where := Describe(cfg.Config)
	cfg.Database = "postgres"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("postgres: ensure database %s: %w", where, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: ensure database %s: %w", where, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	// Two concurrent CREATE DATABASE either see 42P04 or, when both passed
	// the catalog check, a unique violation on pg_database's name index.
	if errors.As(err, &pgErr) && (pgErr.Code == codeDuplicateDatabase || pgErr.Code == codeUniqueViolation) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("postgres: create database %s: %w", where, err)
	}
	return nil
}

// withoutPoolParams returns raw without pgxpool's own parameters; a raw
// that is not a URL (a key=value DSN) is returned as it is.
func withoutPoolParams(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return raw
	}
	stripPoolParams(u)
	return u.String()
}

// Beginner starts a transaction: a *pgxpool.Pool, a *pgx.Conn, or a pgx.Tx
// (which starts a savepoint).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// txBeginner is a Beginner that can set the isolation level: a pool or a
// connection (a pgx.Tx cannot).
type txBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// txOptions are the options of every transaction InTx begins on a pool or
// a connection. READ COMMITTED is pinned, not left to the server's or the
// role's default_transaction_isolation, because the repositories rely on
// it: each statement sees the rows committed before it started, so a
// re-read after INSERT … ON CONFLICT DO NOTHING finds the row a concurrent
// winner committed. Under REPEATABLE READ or SERIALIZABLE that re-read
// would see the transaction's old snapshot and find nothing.
var txOptions = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// InTx runs fn in a transaction begun on db (Begin). The transaction is
// committed when fn returns nil and rolled back when fn returns an error or
// panics; fn's error is returned as is, so callers can test it with
// errors.Is. fn must not keep tx after returning.
//
// On a pool or a connection the transaction is READ COMMITTED whatever the
// server's default (see txOptions); on a pgx.Tx it is a savepoint of that
// transaction and keeps its isolation level.
func InTx(ctx context.Context, db Beginner, fn func(pgx.Tx) error) error {
	tx, err := Begin(ctx, db)
	if err != nil {
		return err
	}
	// Rollback after Commit is a no-op; on error or panic it undoes fn.
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit: %w", err)
	}
	return nil
}

// Begin begins a transaction on db as InTx does; the caller commits or
// rolls it back. On a pool the transaction is pipelined: its BEGIN goes out
// with its first statement, and statements queued through Pipelined with
// the next one (pipeline.go).
func Begin(ctx context.Context, db Beginner) (pgx.Tx, error) {
	tx, err := begin(ctx, db)
	if err != nil {
		return nil, fmt.Errorf("postgres: begin: %w", err)
	}
	return tx, nil
}

func begin(ctx context.Context, db Beginner) (pgx.Tx, error) {
	if pool, ok := db.(*pgxpool.Pool); ok {
		return beginPipelined(ctx, pool)
	}
	if _, nested := db.(pgx.Tx); !nested {
		if b, ok := db.(txBeginner); ok {
			return b.BeginTx(ctx, txOptions)
		}
	}
	return db.Begin(ctx)
}
