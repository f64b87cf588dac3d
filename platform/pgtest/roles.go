package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Owner is the test server's stand-in for the role that migrates on a
// managed PostgreSQL: a login role that may create databases and roles but
// is not a superuser. EnsureOwner creates it; like every role it is
// cluster-wide, shared by the tests of every package, and never dropped.
const Owner = "goodgo_test_owner"

// EnsureOwner creates Owner on the test server unless it exists.
func EnsureOwner(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm, err := admin()
	if err != nil {
		tb.Fatal(err)
	}
	if err := createOwner(ctx, adm); err != nil {
		tb.Fatal(err)
	}
}

// EnsureOwner creates Owner on s unless it exists.
func (s *TLSServer) EnsureOwner(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if err := createOwner(ctx, conn); err != nil {
		tb.Fatal(err)
	}
}

// createOwner creates Owner through a superuser's q unless it exists.
func createOwner(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
	Exec(context.Context, string, ...any) (pgconn.CommandTag, error)
},
) error {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", Owner).Scan(&exists); err != nil {
		return fmt.Errorf("pgtest: look up role %s: %w", Owner, err)
	}
	if exists {
		return nil
	}
	_, err := q.Exec(ctx, "CREATE ROLE "+pgx.Identifier{Owner}.Sanitize()+" LOGIN CREATEDB CREATEROLE")
	// Test binaries running at once race to create it (42710, or 23505
	// when both passed the catalog check).
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "42710" || pgErr.Code == "23505") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("pgtest: create role %s: %w", Owner, err)
	}
	return nil
}

// NewOwnedDatabase creates an empty database owned by Owner (EnsureOwner
// first) and returns its URL as Owner, for a test that migrates as a
// managed server's owner would; it is dropped when the test ends, like
// NewDatabase's.
func NewOwnedDatabase(tb testing.TB) string {
	tb.Helper()
	EnsureOwner(tb)
	dbURL, _ := NewDatabase(tb, nil)
	u, err := url.Parse(dbURL)
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	adm, err := admin()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := u.Path[1:]
	if _, err := adm.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{Owner}.Sanitize())); err != nil {
		tb.Fatalf("pgtest: give database %s to %s: %v", name, Owner, err)
	}
	return AsRole(dbURL, Owner)
}

// AsRole returns dbURL with role as its user and no password: the test
// server trusts local connections (pg_hba.conf "trust"), as the one of
// `make test` does.
func AsRole(dbURL, role string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return dbURL
	}
	u.User = url.User(role)
	return u.String()
}
