// Package opshttp serves a binary's operational HTTP endpoints, apart from
// its gRPC API: /metrics for Prometheus, /healthz for liveness and /readyz
// for readiness (Kubernetes probes, load balancers).
package opshttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/goodgo/goodgo/platform/logs"
)

const (
	// readyTimeout bounds one readiness check, below the usual probe
	// timeout so that a hung dependency reads as "not ready", not as a
	// probe timeout.
	readyTimeout = 2 * time.Second
	// shutdownTimeout bounds the wait for in-flight scrapes and probes.
	shutdownTimeout = 5 * time.Second
)

// Server is the ops HTTP server, bound to its address by New.
type Server struct {
	http   *http.Server
	mux    *http.ServeMux
	lis    net.Listener
	logger *slog.Logger
	ready  func(context.Context) error
	// lastBody and lastCode remember the last /readyz answer so that only
	// changes are logged, not every probe.
	mu       sync.Mutex
	lastBody string
	lastCode int
}

// New binds addr (":0" picks a free port) and returns a server exposing:
//
//   - /metrics: reg in the Prometheus text or OpenMetrics format (the
//     latter carries exemplars linking latencies to traces);
//   - /healthz: 200 while the process serves HTTP at all (liveness);
//   - /readyz: 200 "ok" when ready returns nil, else 503 (readiness).
//     When ready's error holds [*CheckError] values, as [Checks] returns,
//     the body names each failed check with its reason ("not ready: kafka
//     (connection refused)"); failed Optional checks leave the answer 200
//     and are listed on a line "degraded: redis (timeout)". Any other error
//     shows only "not ready": the port is unauthenticated, and a
//     dependency's error text carries host, user and database names. The
//     error itself is logged, once per change of the answer. A nil ready
//     is always ready. The checks share a context bounded by 2 s.
//
// A nil logger discards logs.
func New(addr string, reg *prometheus.Registry, ready func(context.Context) error, logger *slog.Logger) (*Server, error) {
	if reg == nil {
		return nil, errors.New("opshttp: nil registry")
	}
	logger = logs.OrDiscard(logger)
	if ready == nil {
		ready = func(context.Context) error { return nil }
	}
	// Binding is immediate and local: there is nothing a context could cancel.
	lis, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("opshttp: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	s := &Server{lis: lis, mux: mux, logger: logger, ready: ready}

	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		Registry:          reg, // counts scrape errors in promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelError),
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.readyz)

	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	err := s.ready(ctx)
	code, body := readiness(err)
	s.logChange(code, body, err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// readiness is /readyz's answer to ready's outcome err.
func readiness(err error) (int, string) {
	if err == nil {
		return http.StatusOK, "ok\n"
	}
	var failed, degraded []string
	for _, c := range checkErrors(err) {
		if c.Name == "" {
			continue
		}
		item := c.Name
		if c.Reason != "" {
			item += " (" + c.Reason + ")"
		}
		if c.Optional {
			degraded = append(degraded, item)
		} else {
			failed = append(failed, item)
		}
	}
	var b strings.Builder
	code := http.StatusServiceUnavailable
	switch {
	case len(failed) > 0:
		b.WriteString("not ready: " + strings.Join(failed, ", ") + "\n")
	case len(degraded) > 0:
		code = http.StatusOK
		b.WriteString("ok\n")
	default:
		b.WriteString("not ready\n") // an error that names no check
	}
	if len(degraded) > 0 {
		b.WriteString("degraded: " + strings.Join(degraded, ", ") + "\n")
	}
	return code, b.String()
}

// checkErrors returns every *CheckError in err's tree, in order.
func checkErrors(err error) []*CheckError {
	if c, ok := err.(*CheckError); ok { //nolint:errorlint // walking the tree by hand, without unwrapping a CheckError
		return []*CheckError{c}
	}
	switch u := err.(type) { //nolint:errorlint // walking the tree by hand
	case interface{ Unwrap() []error }:
		var out []*CheckError
		for _, e := range u.Unwrap() {
			out = append(out, checkErrors(e)...)
		}
		return out
	case interface{ Unwrap() error }:
		return checkErrors(u.Unwrap())
	}
	return nil
}

// logChange logs readiness when its answer changed since the last probe:
// the errors behind "not ready" or "degraded" once, not at every probe.
func (s *Server) logChange(code int, body string, err error) {
	s.mu.Lock()
	last, lastCode := s.lastBody, s.lastCode
	s.lastBody, s.lastCode = body, code
	s.mu.Unlock()
	if body == last {
		return
	}
	switch {
	case code != http.StatusOK:
		s.logger.Warn("not ready", "error", err.Error())
	case err != nil:
		s.logger.Warn("degraded", "error", err.Error())
	case lastCode != http.StatusOK && last != "":
		s.logger.Info("ready again")
	case last != "":
		s.logger.Info("no longer degraded")
	}
}

// ServeProfiles adds Go's runtime profiles under /debug/pprof/ (CPU, heap,
// goroutines, block and mutex contention; net/http/pprof) and samples
// blocking and mutex contention events from now on. Call it before Serve,
// and only when an operator asked (OPS_PPROF): the port is
// unauthenticated, a CPU profile costs CPU while it runs, and the block
// and mutex samplers cost a little all the time.
func (s *Server) ServeProfiles() {
	// One event per 10 µs blocked and one in 100 contended locks: enough
	// to rank the waits of a busy process, cheap enough to leave on.
	runtime.SetBlockProfileRate(10_000)
	runtime.SetMutexProfileFraction(100)
	s.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	s.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	s.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	s.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	s.logger.Info("ops http serves profiles", "path", "/debug/pprof/")
}

// Addr is the bound listen address.
func (s *Server) Addr() net.Addr {
	return s.lis.Addr()
}

// Serve serves until ctx is cancelled, then shuts down, waiting up to 5 s
// for requests in flight. It returns nil after a shutdown caused by ctx, or
// the error that stopped serving. Serve may be called once.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(s.lis) }()
	s.logger.InfoContext(ctx, "ops http server listening", "addr", s.Addr().String())

	select {
	case err := <-errc:
		return fmt.Errorf("opshttp: serve: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := s.http.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("opshttp: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("opshttp: serve: %w", err)
	}
	return nil
}
