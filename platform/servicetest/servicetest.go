// Package servicetest runs a binary's run function in-process for its
// component tests, as main would (bootstrap's log lines tell where it
// serves), and holds the helpers those tests share. For tests only.
package servicetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Lookup reads env as os.LookupEnv reads the environment.
func Lookup(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

// maxLogBytes caps what Logs keeps, so that benchmarks logging every call
// do not grow it without bound; the start-up lines come first.
const maxLogBytes = 4 << 20

// Logs is a binary's stdout: it keeps its JSON log lines for the test to
// read. Safe for concurrent use.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() > maxLogBytes {
		return len(p), nil
	}
	return l.buf.Write(p)
}

// String returns everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// All returns the log lines whose message is msg, in order.
func (l *Logs) All(msg string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(l.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			out = append(out, line)
		}
	}
	return out
}

// Find returns the first log line whose message is msg, or nil.
func (l *Logs) Find(msg string) map[string]any {
	if all := l.All(msg); len(all) > 0 {
		return all[0]
	}
	return nil
}

// WaitFor returns attribute attr of the first log line whose message is
// msg, waiting up to 15 s for it.
func (l *Logs) WaitFor(tb testing.TB, msg, attr string) string {
	tb.Helper()
	var value string
	require.Eventually(tb, func() bool {
		value, _ = l.Find(msg)[attr].(string)
		return value != ""
	}, 15*time.Second, 10*time.Millisecond, "no %q log line with %s; logs:\n%s", msg, attr, l)
	return value
}

// Process is a binary's run function serving in-process.
type Process struct {
	// Logs is its stdout.
	Logs *Logs
	// GRPCAddr and HTTPAddr are where it serves gRPC and the ops HTTP
	// endpoints.
	GRPCAddr, HTTPAddr string

	service string
	cancel  context.CancelFunc
	done    chan error
	once    sync.Once
	err     error
}

// Start runs run (the binary service's run, given its stdout) until Stop
// or the end of the test, and waits until it serves: its "<service>
// started" log line. run ending first, or with an error at the end of the
// test, fails the test.
func Start(tb testing.TB, service string, run func(ctx context.Context, stdout io.Writer) error) *Process {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := &Process{Logs: &Logs{}, service: service, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- run(ctx, p.Logs) }()
	tb.Cleanup(func() {
		if err := p.wait(tb); err != nil {
			tb.Errorf("%s: %v", service, err)
		}
	})
	var started map[string]any
	require.Eventually(tb, func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			return true
		default:
		}
		started = p.Logs.Find(service + " started")
		return started != nil
	}, 20*time.Second, 10*time.Millisecond, "%s did not start; logs:\n%s", service, p.Logs)
	require.NotNil(tb, started, "%s ended before serving; logs:\n%s", service, p.Logs)
	p.GRPCAddr, _ = started["grpc_addr"].(string)
	p.HTTPAddr, _ = started["http_addr"].(string)
	return p
}

// Stop cancels run and requires it to return nil within 30 s, having
// logged "<service> stopped".
func (p *Process) Stop(tb testing.TB) {
	tb.Helper()
	require.NoError(tb, p.wait(tb))
	require.NotNil(tb, p.Logs.Find(p.service+" stopped"), "logs:\n%s", p.Logs)
}

// Ended reports whether run has returned, and what it returned.
func (p *Process) Ended() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Readyz returns the status and body of /readyz (0 and the error when the
// ops server does not answer).
func (p *Process) Readyz(tb testing.TB) (int, string) {
	return HTTPGet(tb, "http://"+p.HTTPAddr+"/readyz")
}

// WaitReadyz waits up to 30 s until /readyz answers code with body,
// failing the test when run returns meanwhile.
func (p *Process) WaitReadyz(tb testing.TB, code int, body string) {
	tb.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ended, err := p.Ended(); ended {
			tb.Fatalf("%s returned while waiting for readiness: %v", p.service, err)
		}
		gotCode, gotBody := p.Readyz(tb)
		if gotCode == code && gotBody == body {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("readyz never answered %d %q (last: %d %q)", code, body, gotCode, gotBody)
		}
		<-tick.C
	}
}

// wait cancels run and returns what it returned.
func (p *Process) wait(tb testing.TB) error {
	p.once.Do(func() {
		p.cancel()
		select {
		case p.err = <-p.done:
		case <-time.After(30 * time.Second):
			tb.Errorf("%s did not return within 30s of its context's end", p.service)
		}
	})
	return p.err
}

// HTTPGet returns the status and body of a GET of url: 0 and the error
// when nothing answers.
func HTTPGet(tb testing.TB, url string) (int, string) {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	require.NoError(tb, err)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return resp.StatusCode, string(body)
}

// RequireNoTestCode fails when package pkg (a binary's import path)
// depends on package testing outside its tests: test helpers belong in
// _test.go files and in packages imported only by them.
func RequireNoTestCode(tb testing.TB, pkg string) {
	tb.Helper()
	out, err := exec.CommandContext(context.Background(), "go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).CombinedOutput() //nolint:gosec // the test names the packages
	require.NoError(tb, err, "go list -deps %s: %s", pkg, out)
	deps := strings.Fields(string(out))
	require.Contains(tb, deps, pkg)
	require.NotContains(tb, deps, "testing", "%s links package testing: a test helper is imported outside the tests", pkg)
}

// RequireDatabaseFailuresClassified requires toStatus, a service's mapping
// of errors to gRPC statuses, to answer the database errors that
// integration tests cannot provoke on demand (a serialization failure, a
// deadlock, a server shutting down, a lost connection) as every service
// does: Aborted for a retryable conflict, Unavailable for a transient
// failure, Internal for the rest, never with the database's own words.
func RequireDatabaseFailuresClassified(t *testing.T, toStatus func(error) error) {
	t.Helper()
	const (
		retry       = "concurrent update; retry"
		unavailable = "temporarily unavailable; retry"
		internal    = "internal error"
	)
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{&pgconn.PgError{Code: "40001"}, codes.Aborted, retry},
		{&pgconn.PgError{Code: "40P01"}, codes.Aborted, retry},
		{&pgconn.PgError{Code: "55P03"}, codes.Unavailable, unavailable},
		{&pgconn.PgError{Code: "57P01"}, codes.Unavailable, unavailable},
		{&pgconn.PgError{Code: "53300"}, codes.Unavailable, unavailable},
		{io.ErrUnexpectedEOF, codes.Unavailable, unavailable},
		{&pgconn.PgError{Code: "23505"}, codes.Internal, internal},
		{errors.New("boom"), codes.Internal, internal},
	} {
		st := status.Convert(toStatus(fmt.Errorf("update x: %w", tc.err)))
		require.Equal(t, tc.code, st.Code(), "%v", tc.err)
		require.Equal(t, tc.msg, st.Message(), "%v", tc.err)
	}
}
