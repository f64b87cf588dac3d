// Package pgtest gives tests a real, migrated, isolated PostgreSQL database
// quickly. The schema is migrated once into a template database named after
// the hash of the migration files and reused by every test, package and run
// with the same migrations; each test then gets its own copy (CREATE
// DATABASE … TEMPLATE, tens of milliseconds) that is dropped when the test
// ends. Tests that only need isolation within one database can use Tx.
//
// The server is TEST_DATABASE_URL, or postgres://postgres@127.0.0.1:5432/postgres
// (a role allowed to create databases). Every database this package
// creates is named goodgo_test_…, and it drops only those.
//
// # Connections
//
// `go test ./...` runs many test binaries at once against one server
// (max_connections is 100 by default), so each binary is frugal: a test
// database's pool has at most [DefaultMaxConns] connections unless the test
// asks for more ([WithMaxConns]), and at most PGTEST_MAX_DATABASES
// (default [DefaultMaxDatabases]) tests of one binary hold test databases
// at once. NewDatabase waits for a free slot; the slot is released when the
// database is dropped at the end of the test. A test that already holds a
// slot, or whose parent test does, creates further databases on that slot
// without waiting, so that a test never waits for itself. Call NewDatabase
// after t.Parallel(), not before: a test paused in t.Parallel() holding a
// slot can leave the sequential tests waiting for it in vain (NewDatabase
// fails after waiting 5 minutes, naming the limit).
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/platform/postgres"
)

// DefaultURL is the server used when TEST_DATABASE_URL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Prefix starts the name of every database pgtest creates.
const Prefix = "goodgo_test_"

// templateComplete marks (as the database comment) a template whose
// migration finished; a template without it was left by a crashed run.
const templateComplete = "pgtest: complete"

// setupTimeout bounds creating a template or a test database.
const setupTimeout = 2 * time.Minute

// adminWait bounds waiting for a free server connection slot when the
// server is full (other test binaries running at the same time).
const adminWait = time.Minute

// DefaultMaxConns is the pool size of a test database unless WithMaxConns
// says otherwise.
const DefaultMaxConns = 4

// DefaultMaxDatabases is how many tests of one test binary may hold test
// databases at once unless PGTEST_MAX_DATABASES says otherwise.
const DefaultMaxDatabases = 8

// slotWait bounds the wait for a database slot: a wait this long means a
// slot is never coming (see the package documentation), not a busy binary.
const slotWait = 5 * time.Minute

// Option customises NewDatabase.
type Option func(*options)

type options struct {
	maxConns int32
}

// WithMaxConns sets the pool size of the test database (at least 1), for a
// test that holds more than DefaultMaxConns connections at once.
func WithMaxConns(n int32) Option {
	return func(o *options) { o.maxConns = n }
}

// ServerURL is the URL of the server tests run against.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

var (
	adminMu   sync.Mutex
	adminPool *pgxpool.Pool

	templatesMu sync.Mutex
	templates   = map[string]*template{} // by migrations hash
)

type template struct {
	once sync.Once
	name string
	err  error
}

// admin is a process-wide pool on the server's maintenance database, used
// to create and drop databases. It lives until the process exits. A server
// that is out of connections (other test binaries run in parallel) is
// waited for up to adminWait rather than failing the test; a failure is not
// remembered, so the next test tries again.
func admin() (*pgxpool.Pool, error) {
	adminMu.Lock()
	defer adminMu.Unlock()
	if adminPool != nil {
		return adminPool, nil
	}
	cfg, err := pgxpool.ParseConfig(ServerURL())
	if err != nil {
		return nil, fmt.Errorf("pgtest: parse server URL: %w", err)
	}
	cfg.MaxConns = 4
	ctx, cancel := context.WithTimeout(context.Background(), adminWait)
	defer cancel()
	for delay := 50 * time.Millisecond; ; delay = min(2*delay, time.Second) {
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err == nil {
			if err = pool.Ping(ctx); err == nil {
				adminPool = pool
				return pool, nil
			}
			pool.Close()
		}
		if !tooManyClients(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("pgtest: connect to %s (set TEST_DATABASE_URL): %w",
				postgres.Describe(cfg.ConnConfig.Config), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// tooManyClients reports the server refusing a connection for lack of
// slots (SQLSTATE 53300): a passing condition while other tests run.
func tooManyClients(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "53300"
}

// NewDatabase creates a database for the test with migrations applied (an
// empty database when migrations is nil) and returns its URL and a pool on
// it of at most DefaultMaxConns connections (see WithMaxConns). It first
// waits for a database slot (see the package documentation). The pool is
// closed, the database dropped and the slot released when the test ends.
// Safe to call from parallel tests.
func NewDatabase(t testing.TB, migrations fs.FS, opts ...Option) (string, *pgxpool.Pool) {
	t.Helper()
	o := options{maxConns: DefaultMaxConns}
	for _, opt := range opts {
		opt(&o)
	}
	if o.maxConns < 1 {
		t.Fatalf("pgtest: WithMaxConns(%d): a pool needs at least 1 connection", o.maxConns)
	}
	slots, err := testSlots()
	if err != nil {
		t.Fatal(err)
	}
	release, err := slots.acquire(t.Name(), slotWait)
	if err != nil {
		t.Fatal(err)
	}
	// Registered first, so it runs last: after the database is dropped.
	t.Cleanup(release)

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	adm, err := admin()
	if err != nil {
		t.Fatal(err)
	}
	tpl := "template0"
	if migrations != nil {
		if tpl, err = migratedTemplate(ctx, adm, migrations); err != nil {
			t.Fatal(err)
		}
	}

	name := Prefix + randomHex(8)
	if _, err := adm.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{tpl}.Sanitize())); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() { drop(t, adm, name) })

	dbURL, err := withDatabase(ServerURL(), name)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	cfg.AfterConnect = postgres.AfterConnect
	cfg.MaxConns = o.maxConns
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: pool on %s: %v", name, err)
	}
	// Registered after drop, so it runs first: the pool closes before the
	// database goes.
	t.Cleanup(pool.Close)
	return dbURL, pool
}

// slotPool limits how many tests hold test databases at once.
type slotPool struct {
	sem  chan struct{} // a token per slot taken
	mu   sync.Mutex
	held map[string]int // test name → slots it holds (1, unless it raced itself)
}

func newSlotPool(n int) *slotPool {
	return &slotPool{sem: make(chan struct{}, n), held: map[string]int{}}
}

// testSlots is the binary's slot pool, sized by PGTEST_MAX_DATABASES.
var testSlots = sync.OnceValues(func() (*slotPool, error) {
	n, err := maxDatabases(os.Getenv("PGTEST_MAX_DATABASES"))
	if err != nil {
		return nil, err
	}
	return newSlotPool(n), nil
})

// maxDatabases parses PGTEST_MAX_DATABASES: empty means the default.
func maxDatabases(v string) (int, error) {
	if v == "" {
		return DefaultMaxDatabases, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("pgtest: PGTEST_MAX_DATABASES=%q is not a positive number", v)
	}
	return n, nil
}

// acquire takes a slot for the test named name, waiting up to wait for
// one, and returns its release. A test that holds a slot already, or whose
// ancestor does (name is the ancestor's extended by "/…"), takes none and
// gets a no-op release: it would otherwise wait for itself.
func (p *slotPool) acquire(name string, wait time.Duration) (func(), error) {
	p.mu.Lock()
	for n := name; ; {
		if p.held[n] > 0 {
			p.mu.Unlock()
			return func() {}, nil
		}
		i := strings.LastIndexByte(n, '/')
		if i < 0 {
			break
		}
		n = n[:i]
	}
	p.mu.Unlock()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case p.sem <- struct{}{}:
	case <-timer.C:
		return nil, fmt.Errorf("pgtest: %s waited %s for one of the %d test database slots (PGTEST_MAX_DATABASES): "+
			"a test holds one while paused in t.Parallel(), or tests hold them too long", name, wait, cap(p.sem))
	}
	p.mu.Lock()
	p.held[name]++
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		if p.held[name]--; p.held[name] <= 0 {
			delete(p.held, name)
		}
		p.mu.Unlock()
		<-p.sem
	}, nil
}

// Tx begins a transaction on pool that is rolled back when the test ends,
// so a test can write freely to a shared database.
func Tx(t testing.TB, pool *pgxpool.Pool) pgx.Tx {
	t.Helper()
	tx, err := pool.Begin(context.Background())
	if err != nil {
		t.Fatalf("pgtest: begin: %v", err)
	}
	t.Cleanup(func() {
		if err := tx.Rollback(context.Background()); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
			t.Errorf("pgtest: rollback: %v", err)
		}
	})
	return tx
}

func drop(t testing.TB, adm *pgxpool.Pool, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// FORCE ends sessions a test left open, e.g. a service under test that
	// is still shutting down.
	if _, err := adm.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Errorf("pgtest: drop database %s: %v", name, err)
	}
}

// migratedTemplate returns the template database holding migrations,
// creating it once per process and reusing one a previous run completed.
func migratedTemplate(ctx context.Context, adm *pgxpool.Pool, migrations fs.FS) (string, error) {
	sum, err := hashFS(migrations)
	if err != nil {
		return "", err
	}
	templatesMu.Lock()
	tpl, ok := templates[sum]
	if !ok {
		tpl = &template{name: Prefix + "tpl_" + sum[:16]}
		templates[sum] = tpl
	}
	templatesMu.Unlock()

	tpl.once.Do(func() { tpl.err = ensureTemplate(ctx, adm, tpl.name, migrations, sum) })
	return tpl.name, tpl.err
}

// ensureTemplate creates and migrates the template under a session advisory
// lock so that test binaries running in parallel (go test ./...) build it
// once; the others wait, then find it complete.
func ensureTemplate(ctx context.Context, adm *pgxpool.Pool, name string, migrations fs.FS, sum string) error {
	conn, err := adm.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgtest: acquire: %w", err)
	}
	defer conn.Release()
	// Advisory locks are per database; every process locks in the
	// maintenance database of ServerURL.
	key := int64(binary.BigEndian.Uint64(mustHex(sum)[:8]))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("pgtest: lock template %s: %w", name, err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key) }()

	var comment *string
	err = conn.QueryRow(ctx,
		"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", name).Scan(&comment)
	switch {
	case err == nil && comment != nil && *comment == templateComplete:
		return nil
	case err == nil:
		// Left incomplete by a run that crashed while migrating.
		if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("pgtest: drop incomplete template %s: %w", name, err)
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("pgtest: look up template %s: %w", name, err)
	}

	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident+" TEMPLATE template0"); err != nil {
		return fmt.Errorf("pgtest: create template %s: %w", name, err)
	}
	tplURL, err := withDatabase(ServerURL(), name)
	if err != nil {
		return err
	}
	if err := postgres.Migrate(ctx, tplURL, migrations, nil); err != nil {
		return fmt.Errorf("pgtest: migrate template %s: %w", name, err)
	}
	// Migrate has closed its connections; CREATE DATABASE … TEMPLATE fails
	// while anyone is connected to the template, so forbid connections.
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+ident+" WITH ALLOW_CONNECTIONS false"); err != nil {
		return fmt.Errorf("pgtest: seal template %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "COMMENT ON DATABASE "+ident+" IS '"+templateComplete+"'"); err != nil {
		return fmt.Errorf("pgtest: mark template %s complete: %w", name, err)
	}
	return nil
}

// hashFS hashes the names and contents of every file in fsys.
func hashFS(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		// Length-prefixed so that moving bytes between name and content
		// changes the hash.
		_ = binary.Write(h, binary.BigEndian, uint64(len(path)))
		h.Write([]byte(path))
		_ = binary.Write(h, binary.BigEndian, uint64(len(b)))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("pgtest: read migrations: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err) // s comes from hex.EncodeToString
	}
	return b
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// withDatabase returns serverURL pointing at database name.
func withDatabase(serverURL, name string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", fmt.Errorf("pgtest: server URL must be a postgres:// URL: %w", err)
	}
	u.Path = "/" + name
	return u.String(), nil
}
