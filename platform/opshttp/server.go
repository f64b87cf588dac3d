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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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
	lis    net.Listener
	logger *slog.Logger
	ready  func(context.Context) error
	// notReady remembers the last readiness outcome so that only changes
	// are logged, not every probe.
	notReady atomic.Bool
}

// New binds addr (":0" picks a free port) and returns a server exposing:
//
//   - /metrics: reg in the Prometheus text or OpenMetrics format (the
//     latter carries exemplars linking latencies to traces);
//   - /healthz: 200 while the process serves HTTP at all (liveness);
//   - /readyz: 200 when ready returns nil, else 503 (readiness). The body
//     names the failing check when ready's error is (or wraps) a
//     [*CheckError], as [Checks] returns ("not ready: postgres"), and is
//     only "not ready" otherwise: the port is unauthenticated, and a
//     dependency's error text carries host, user and database names. The
//     error itself is logged, once per change of state. A nil ready is
//     always ready. Each check gets a context bounded by 2 s.
//
// A nil logger discards logs.
func New(addr string, reg *prometheus.Registry, ready func(context.Context) error, logger *slog.Logger) (*Server, error) {
	if reg == nil {
		return nil, errors.New("opshttp: nil registry")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if ready == nil {
		ready = func(context.Context) error { return nil }
	}
	// Binding is immediate and local: there is nothing a context could cancel.
	lis, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("opshttp: listen on %s: %w", addr, err)
	}
	s := &Server{lis: lis, logger: logger, ready: ready}

	mux := http.NewServeMux()
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
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := s.ready(ctx); err != nil {
		if !s.notReady.Swap(true) {
			s.logger.Warn("not ready", "error", err.Error())
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		var checkErr *CheckError
		if errors.As(err, &checkErr) && checkErr.Name != "" {
			_, _ = fmt.Fprintf(w, "not ready: %s\n", checkErr.Name)
			return
		}
		_, _ = w.Write([]byte("not ready\n"))
		return
	}
	if s.notReady.Swap(false) {
		s.logger.Info("ready again")
	}
	_, _ = w.Write([]byte("ok\n"))
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
