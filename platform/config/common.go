package config

import (
	"log/slog"
	"strings"
	"time"
)

// Common holds the settings every GoodGo binary shares.
type Common struct {
	// Service is the binary's name, used in logs, traces and metrics, and
	// the name in its certificate's SPIFFE ID.
	Service string
	// Dev is development mode (GOODGO_MODE=development; default
	// production): the development credentials of `goodgoctl dev init`
	// are the defaults, and reflection is served.
	Dev bool
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
	// DrainDelay is how long the binary keeps serving after SIGTERM while its
	// health already says NOT_SERVING, so load balancers stop routing to it
	// first (DRAIN_DELAY, default 0s; about 5s on Kubernetes).
	DrainDelay time.Duration
	// StartupTimeout is how long unreachable PostgreSQL or Redis are retried
	// at start before the binary gives up (STARTUP_TIMEOUT, default 30s).
	StartupTimeout time.Duration
	// Profiles serves Go's runtime profiles on the ops HTTP port under
	// /debug/pprof/ (OPS_PPROF, default false): for measuring, not for
	// an exposed port, which is unauthenticated.
	Profiles bool
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
		DrainDelay:      e.Duration("DRAIN_DELAY", 0),
		StartupTimeout:  positive(e, "STARTUP_TIMEOUT", DefaultStartupTimeout),
		Dev:             loadMode(e),
		Profiles:        e.Bool("OPS_PPROF", false),
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

// Redis names the Redis that holds idempotency keys: REDIS_URL (default
// redis://127.0.0.1:6379/0), or REDIS_ADDRS (comma-separated host:port) for
// Redis Cluster, which takes precedence and takes only credentials and TLS
// from REDIS_URL.
//
// A rediss:// REDIS_URL turns TLS on (at least TLS 1.2, for the single
// server and every cluster node alike); the TLS settings below need it.
type Redis struct {
	URL   string
	Addrs []string
	// CAFile holds the PEM certificates that may issue the server's
	// certificate (REDIS_CA_FILE; unset: the system roots).
	CAFile string
	// CertFile and KeyFile are the client certificate and key presented
	// to a server that requires one (REDIS_TLS_CERT_FILE,
	// REDIS_TLS_KEY_FILE; both or neither).
	CertFile, KeyFile string
	// ServerName is the name checked against the server's certificate
	// (REDIS_TLS_SERVER_NAME; unset: the host of REDIS_URL, or with
	// REDIS_ADDRS the host of each node dialled).
	ServerName string
}

// TLS reports whether the connection is encrypted (a rediss:// URL).
func (r Redis) TLS() bool {
	scheme, _, _ := strings.Cut(r.URL, "://")
	return strings.EqualFold(scheme, "rediss")
}

// LoadRedis reads REDIS_URL, REDIS_ADDRS and the TLS settings REDIS_CA_FILE,
// REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE and REDIS_TLS_SERVER_NAME. The
// files are read when connecting.
func LoadRedis(e *Env) Redis {
	r := Redis{
		URL:        e.URL("REDIS_URL", "redis://127.0.0.1:6379/0", "redis", "rediss"),
		Addrs:      e.List("REDIS_ADDRS", nil),
		CAFile:     e.String("REDIS_CA_FILE", ""),
		CertFile:   e.String("REDIS_TLS_CERT_FILE", ""),
		KeyFile:    e.String("REDIS_TLS_KEY_FILE", ""),
		ServerName: e.String("REDIS_TLS_SERVER_NAME", ""),
	}
	switch {
	case r.CertFile != "" && r.KeyFile == "":
		e.Invalid("REDIS_TLS_KEY_FILE", "required with REDIS_TLS_CERT_FILE")
	case r.KeyFile != "" && r.CertFile == "":
		e.Invalid("REDIS_TLS_CERT_FILE", "required with REDIS_TLS_KEY_FILE")
	}
	if !r.TLS() {
		// A TLS setting next to a plaintext URL would be silently ignored.
		for _, s := range [][2]string{
			{"REDIS_CA_FILE", r.CAFile}, {"REDIS_TLS_CERT_FILE", r.CertFile},
			{"REDIS_TLS_KEY_FILE", r.KeyFile}, {"REDIS_TLS_SERVER_NAME", r.ServerName},
		} {
			if s[1] != "" {
				e.Invalid(s[0], "needs a rediss:// REDIS_URL (TLS)")
			}
		}
	}
	return r
}

// Idempotency tunes the idempotency keys of a service's mutating RPCs.
type Idempotency struct {
	// TTL is how long a completed request is replayed (IDEMPOTENCY_TTL,
	// default 24h, at least 1s).
	TTL time.Duration
	// Prefix starts every key in Redis (IDEMPOTENCY_KEY_PREFIX, default
	// "idem:"); keys are scoped by caller and method, so services may share it.
	Prefix string
}

// LoadIdempotency reads IDEMPOTENCY_TTL and IDEMPOTENCY_KEY_PREFIX.
func LoadIdempotency(e *Env) Idempotency {
	c := Idempotency{
		TTL:    e.Duration("IDEMPOTENCY_TTL", 24*time.Hour),
		Prefix: e.String("IDEMPOTENCY_KEY_PREFIX", "idem:"),
	}
	if c.TTL < time.Second {
		e.Invalid("IDEMPOTENCY_TTL", "must be at least 1s")
	}
	return c
}
