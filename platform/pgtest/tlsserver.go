package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goodgo/goodgo/platform/mtls"
)

// DefaultPGBin is where StartTLSServer finds initdb, pg_ctl and postgres
// unless PGTEST_PGBIN names another directory (Debian's PostgreSQL 15).
const DefaultPGBin = "/usr/lib/postgresql/15/bin"

// TLSServer is a private PostgreSQL server of one test that accepts
// connections only over TLS: pg_hba.conf trusts hostssl connections from
// 127.0.0.1 and rejects every hostnossl one.
type TLSServer struct {
	// Port is the server's TCP port on 127.0.0.1.
	Port int
	// CA issued the server's certificate, whose only name is the IP
	// address 127.0.0.1; CAFile holds it as PEM.
	CA     *mtls.CA
	CAFile string
	// Dir holds the data directory, the Unix socket, the server's
	// certificate and key, and server.log.
	Dir string

	bin    string   // initdb, pg_ctl and postgres
	asUser []string // the command prefix that drops root
}

// ServerOption tunes StartTLSServer.
type ServerOption func(*serverOptions)

type serverOptions struct {
	maxConnections int
	settings       []string
}

// MaxConnections sets the server's max_connections (default 20), for a
// test that runs whole binaries against it.
func MaxConnections(n int) ServerOption {
	return func(o *serverOptions) { o.maxConnections = n }
}

// Settings adds postgresql.conf lines after the defaults, which they
// override (the last setting of a name wins): e.g. "fsync = on" and
// "shared_preload_libraries = 'pg_stat_statements'" for a benchmark that
// reads the statements' statistics with durable commits.
func Settings(lines ...string) ServerOption {
	return func(o *serverOptions) { o.settings = append(o.settings, lines...) }
}

// URL is the URL of database on the server as user postgres, checking the
// server's certificate against CAFile and the host name
// (sslmode=verify-full).
func (s *TLSServer) URL(database string) string {
	q := url.Values{"sslmode": {"verify-full"}, "sslrootcert": {s.CAFile}}
	u := url.URL{Scheme: "postgres", User: url.User("postgres"), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)),
		Path: "/" + database, RawQuery: q.Encode()}
	return u.String()
}

// StartTLSServer initialises and starts a private PostgreSQL server for the
// test (initdb takes a second or two) with ssl=on, a certificate from a
// fresh test CA and TLS 1.2 at least, on a free port of 127.0.0.1; it is
// stopped (pg_ctl stop -m immediate) and its directory removed when the test
// ends. It does not touch the shared server of ServerURL.
//
// PostgreSQL refuses to run as root, so as root the server runs as the
// postgres OS user (through runuser) in a directory it owns. The test is
// skipped, saying why, when the binaries (PGTEST_PGBIN, default
// DefaultPGBin) or, as root, the postgres user or runuser are missing.
func StartTLSServer(t testing.TB, opts ...ServerOption) *TLSServer {
	t.Helper()
	o := serverOptions{maxConnections: 20}
	for _, opt := range opts {
		opt(&o)
	}
	bin := os.Getenv("PGTEST_PGBIN")
	if bin == "" {
		bin = DefaultPGBin
	}
	for _, tool := range []string{"initdb", "pg_ctl", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, tool)); err != nil { //nolint:gosec // G703: the developer names the binaries' directory
			t.Skipf("pgtest: no PostgreSQL server binaries (set PGTEST_PGBIN): %v", err)
		}
	}
	var (
		asUser   []string // the command prefix that drops root
		uid, gid = -1, -1
	)
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("pgtest: running as root, PostgreSQL needs the postgres OS user to run as: %v", err)
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			t.Skipf("pgtest: running as root, PostgreSQL needs runuser to run as postgres: %v", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		asUser = []string{runuser, "-u", "postgres", "--"}
	}

	// Not t.TempDir: its parent is private to root, out of postgres's reach.
	dir, err := os.MkdirTemp("", "pgtest-tls-")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	s := &TLSServer{Dir: dir, CAFile: filepath.Join(dir, "ca.crt"), bin: bin, asUser: asUser}
	chown := func(name string) {
		if uid >= 0 {
			if err := os.Chown(name, uid, gid); err != nil {
				t.Fatalf("pgtest: %v", err)
			}
		}
	}
	chown(dir)

	if s.CA, err = mtls.NewCA("pgtest TLS CA", time.Hour); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	issued, err := s.CA.Issue("postgres", []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := issued.WriteFiles(certFile, keyFile); err != nil { // the key 0600, as PostgreSQL demands
		t.Fatalf("pgtest: %v", err)
	}
	chown(certFile)
	chown(keyFile)
	if err := os.WriteFile(s.CAFile, s.CA.PEM, 0o600); err != nil {
		t.Fatalf("pgtest: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	run := func(args ...string) error { return s.run(ctx, args...) }
	data := filepath.Join(dir, "data")
	if err := run(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		t.Fatalf("pgtest: initdb: %v", err)
	}
	// Files initdb created belong to postgres; rewriting them keeps that.
	hba := "# pgtest.StartTLSServer: TLS only.\n" +
		"local     all all              trust\n" +
		"hostssl   all all 127.0.0.1/32 trust\n" +
		"hostnossl all all 0.0.0.0/0    reject\n" +
		"hostnossl all all ::/0         reject\n"
	if err := os.WriteFile(filepath.Join(data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	conf := fmt.Sprintf(`
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
ssl = on
ssl_cert_file = '%s'
ssl_key_file = '%s'
ssl_min_protocol_version = 'TLSv1.2'
max_connections = %d
shared_buffers = 16MB
fsync = off
full_page_writes = off
`, dir, certFile, keyFile, o.maxConnections)
	for _, line := range o.settings {
		conf += line + "\n"
	}
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteString(conf)
		err = errors.Join(err, f.Close())
	}
	if err != nil {
		t.Fatalf("pgtest: postgresql.conf: %v", err)
	}

	// A free port can be taken between choosing and binding it: try again
	// with another.
	logFile := filepath.Join(dir, "server.log")
	for attempt := 1; ; attempt++ {
		s.Port = freePort(t)
		// pg_ctl -w polls until the server accepts connections, up to -t.
		err = run(filepath.Join(bin, "pg_ctl"), "start", "-D", data, "-w", "-t", "60", "-l", logFile,
			"-o", "-p "+strconv.Itoa(s.Port))
		if err == nil {
			break
		}
		log, _ := os.ReadFile(logFile)
		if attempt == 3 || !bytes.Contains(log, []byte("could not bind")) {
			t.Fatalf("pgtest: start PostgreSQL: %v\nserver.log:\n%s", err, log)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.pgctl(ctx, "stop", "-m", "immediate", "-w"); err != nil {
			t.Errorf("pgtest: stop PostgreSQL in %s: %v", s.Dir, err)
		}
	})
	return s
}

// Crash stops the server as a crash would (pg_ctl stop -m immediate: no
// checkpoint, every connection dropped at once, crash recovery at the next
// start); Start brings it back on the same port. Commits survive: the
// server runs with synchronous_commit on, so a commit acknowledged to a
// client has reached the operating system, and only the machine's crash,
// which fsync = off gives up, could lose it.
func (s *TLSServer) Crash(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := s.pgctl(ctx, "stop", "-m", "immediate", "-w"); err != nil {
		t.Fatalf("pgtest: crash PostgreSQL: %v", err)
	}
}

// Start starts the server again after Crash, on its port, and waits until
// it accepts connections (crash recovery included).
func (s *TLSServer) Start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if err := s.pgctl(ctx, "start", "-w", "-t", "60", "-l", filepath.Join(s.Dir, "server.log"),
		"-o", "-p "+strconv.Itoa(s.Port)); err != nil {
		t.Fatalf("pgtest: start PostgreSQL again: %v", err)
	}
}

// pgctl runs pg_ctl on the server's data directory.
func (s *TLSServer) pgctl(ctx context.Context, args ...string) error {
	return s.run(ctx, append([]string{filepath.Join(s.bin, "pg_ctl"), args[0], "-D", filepath.Join(s.Dir, "data")}, args[1:]...)...)
}

// run runs one of PostgreSQL's tools as the server's OS user.
func (s *TLSServer) run(ctx context.Context, args ...string) error {
	args = append(append([]string(nil), s.asUser...), args...)
	cmd := exec.CommandContext(ctx, args[0], args[1:]...) //nolint:gosec // G204: PostgreSQL's own tools, arguments of this file
	cmd.Dir = s.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return nil
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}
