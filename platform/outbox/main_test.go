package outbox_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"
)

// The package's tests share one database, created by TestMain from the
// canonical DDL (db/outbox/schema/outbox.sql) plus a stand-in business table,
// and dropped afterwards. Tests isolate themselves by aggregate id.
const (
	serverURL = "postgres://postgres@127.0.0.1:5432/"
	adminURL  = serverURL + "postgres"
)

var dbURL string

// businessDDL is a minimal aggregate table for "business row + outbox row in
// one transaction".
const businessDDL = `CREATE TABLE orders (
    id      TEXT   PRIMARY KEY,
    version BIGINT NOT NULL
);`

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	ctx := context.Background()
	drop, err := createDatabase(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "outbox tests:", err)
		return 1
	}
	defer func() {
		if err := drop(); err != nil {
			fmt.Fprintln(os.Stderr, "outbox tests: drop database:", err)
		}
	}()
	return m.Run()
}

func createDatabase(ctx context.Context) (drop func() error, err error) {
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	name := "goodgo_outbox_test_" + hex.EncodeToString(suffix)

	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", adminURL, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return nil, fmt.Errorf("create database: %w", err)
	}
	drop = func() error {
		admin, err := pgx.Connect(context.Background(), adminURL)
		if err != nil {
			return err
		}
		defer admin.Close(context.Background())
		_, err = admin.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)")
		return err
	}

	dbURL = serverURL + name

	ddl, err := os.ReadFile("../../db/outbox/schema/outbox.sql")
	if err != nil {
		return drop, err
	}
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return drop, err
	}
	defer conn.Close(ctx)
	// Exec without arguments uses the simple protocol: multi-statement files work.
	if _, err := conn.Exec(ctx, string(ddl)); err != nil {
		return drop, fmt.Errorf("apply outbox DDL: %w", err)
	}
	if _, err := conn.Exec(ctx, businessDDL); err != nil {
		return drop, fmt.Errorf("apply business DDL: %w", err)
	}
	return drop, nil
}

// connect opens a connection to the test database, closed at test end.
func connect(tb testing.TB) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}
