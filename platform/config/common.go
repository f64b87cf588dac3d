package config

import (
	"log/slog"
	"time"
)

// Common holds the settings every GoodGo binary shares.
type Common struct {
	// Service is the binary's name, used in logs, traces and metrics.
	Service string
	// GRPCAddr is the gRPC listen address (GRPC_ADDR).
	GRPCAddr string
	// HTTPAddr is the ops HTTP listen address serving /metrics, /healthz
	// and /readyz (HTTP_ADDR).
	HTTPAddr string
	// LogLevel is the minimum level logged (LOG_LEVEL: debug, info, warn,
	// error; default info).
	LogLevel slog.Level
	// ShutdownTimeout bounds the graceful drain after SIGTERM
	// (SHUTDOWN_TIMEOUT, default 10s).
	ShutdownTimeout time.Duration
	// StartupTimeout is how long unreachable PostgreSQL or Redis are retried
	// at start before the binary gives up (STARTUP_TIMEOUT, default 30s).
	StartupTimeout time.Duration
}

// Defaults of the Common settings that do not depend on the service.
const (
	DefaultLogLevel        = slog.LevelInfo
	DefaultShutdownTimeout = 10 * time.Second
	DefaultStartupTimeout  = 30 * time.Second
)

// LoadCommon reads the shared settings of service from e. grpcAddr and
// httpAddr are the service's default listen addresses, distinct per service
// so that all binaries can run side by side on a developer machine. Problems
// are recorded in e; check e.Err() once every setting has been read.
func LoadCommon(e *Env, service, grpcAddr, httpAddr string) Common {
	c := Common{
		Service:         service,
		GRPCAddr:        e.HostPort("GRPC_ADDR", grpcAddr),
		HTTPAddr:        e.HostPort("HTTP_ADDR", httpAddr),
		ShutdownTimeout: positive(e, "SHUTDOWN_TIMEOUT", DefaultShutdownTimeout),
		StartupTimeout:  positive(e, "STARTUP_TIMEOUT", DefaultStartupTimeout),
	}
	switch e.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error") {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "warn":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		c.LogLevel = DefaultLogLevel
	}
	return c
}

// positive rejects a zero timeout, which would make every shutdown or
// start-up fail at once.
func positive(e *Env, name string, def time.Duration) time.Duration {
	d := e.Duration(name, def)
	if d > 0 {
		return d
	}
	e.invalid(name, e.String(name, ""), "must be positive")
	return def
}
