package config_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
)

func envOf(vars map[string]string) *config.Env {
	return config.NewEnv(func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	})
}

// loaded reads a configuration with load from vars, which must be valid.
func loaded[T any](t *testing.T, vars map[string]string, load func(*config.Env) T) T {
	t.Helper()
	e := envOf(vars)
	v := load(e)
	require.NoError(t, e.Err())
	return v
}

func TestEnvDefaultsWhenUnsetOrBlank(t *testing.T) {
	e := envOf(map[string]string{"BLANK": "  "})
	require.Equal(t, "d", e.String("UNSET", "d"))
	require.Equal(t, "d", e.String("BLANK", "d"))
	require.Equal(t, 7, e.Int("UNSET", 7))
	require.Equal(t, 3*time.Second, e.Duration("UNSET", 3*time.Second))
	require.True(t, e.Bool("UNSET", true))
	require.Equal(t, []string{"a"}, e.List("UNSET", []string{"a"}))
	require.Equal(t, "redis://127.0.0.1:6379/0", e.URL("UNSET", "redis://127.0.0.1:6379/0", "redis"))
	require.Equal(t, ":8080", e.HostPort("UNSET", ":8080"))
	require.Equal(t, "info", e.OneOf("UNSET", "info", "debug", "info"))
	require.NoError(t, e.Err())
}

func TestEnvParsesValues(t *testing.T) {
	e := envOf(map[string]string{
		"S":     " hello ",
		"I":     "42",
		"D":     "250ms",
		"B":     "TRUE",
		"L":     " a, b ,,c ",
		"U":     "postgres://u:secret@db:5432/order?sslmode=disable",
		"HP":    "0.0.0.0:50051",
		"HP6":   "[::1]:0",
		"LEVEL": "WARN",
	})
	require.Equal(t, "hello", e.String("S", ""))
	require.Equal(t, 42, e.Int("I", 0))
	require.Equal(t, 250*time.Millisecond, e.Duration("D", 0))
	require.True(t, e.Bool("B", false))
	require.Equal(t, []string{"a", "b", "c"}, e.List("L", nil))
	require.Equal(t, "postgres://u:secret@db:5432/order?sslmode=disable", e.URL("U", "", "postgres", "postgresql"))
	require.Equal(t, "0.0.0.0:50051", e.HostPort("HP", ""))
	require.Equal(t, "[::1]:0", e.HostPort("HP6", ""))
	require.Equal(t, "warn", e.OneOf("LEVEL", "info", "debug", "info", "warn", "error"))
	require.NoError(t, e.Err())
}

func TestEnvErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name string
		read func(*config.Env)
		want string
	}{
		{"required missing", func(e *config.Env) { e.Required("MISSING") }, `MISSING: required`},
		{"required blank", func(e *config.Env) { e.Required("BLANK") }, `BLANK: required`},
		{"int", func(e *config.Env) { e.Int("V", 1) }, `V: must be an integer (got "x")`},
		{"duration", func(e *config.Env) { e.Duration("V", 1) }, `V: must be a duration such as "500ms", "30s" or "2m" (got "x")`},
		{"negative duration", func(e *config.Env) { e.Duration("NEG", 1) }, `NEG: must not be negative (got "-1s")`},
		{"bool", func(e *config.Env) { e.Bool("V", false) }, `V: must be true or false (got "x")`},
		{"one of", func(e *config.Env) { e.OneOf("V", "a", "a", "b") }, `V: must be one of a, b (got "x")`},
		{"url without scheme", func(e *config.Env) { e.URL("V", "") }, `V: must be an absolute URL with a scheme (got "x")`},
		{"url unparsable", func(e *config.Env) { e.URL("BADURL", "") }, `BADURL: must be a URL (got "postgres://u:xxxxx@h:p0rt/db")`},
		{"url scheme", func(e *config.Env) { e.URL("PGURL", "", "redis", "rediss") }, `PGURL: scheme must be one of redis, rediss (got "postgres://u:xxxxx@db/order")`},
		{"host port", func(e *config.Env) { e.HostPort("V", "") }, `V: must be "host:port" or ":port" (got "x")`},
		{"port range", func(e *config.Env) { e.HostPort("BIGPORT", "") }, `BIGPORT: port must be a number from 0 to 65535 (got ":70000")`},
		{"bad default", func(e *config.Env) { e.HostPort("UNSET", "nope") }, `UNSET: must be "host:port" or ":port" (got "nope")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := envOf(map[string]string{
				"V":       "x",
				"BLANK":   " ",
				"NEG":     "-1s",
				"BADURL":  "postgres://u:secret@h:p0rt/db",
				"PGURL":   "postgres://u:secret@db/order",
				"BIGPORT": ":70000",
			})
			tt.read(e)
			err := e.Err()
			require.Error(t, err)
			require.Equal(t, tt.want, err.Error())
			require.NotContains(t, err.Error(), "secret")
		})
	}
}

func TestEnvReturnsDefaultOnBadValue(t *testing.T) {
	e := envOf(map[string]string{"I": "x", "D": "x", "B": "x"})
	require.Equal(t, 5, e.Int("I", 5))
	require.Equal(t, time.Second, e.Duration("D", time.Second))
	require.True(t, e.Bool("B", true))
}

func TestEnvErrCollectsEveryProblemOnePerLine(t *testing.T) {
	e := envOf(map[string]string{"A": "x", "B": "y"})
	e.Int("A", 0)
	e.Bool("B", false)
	e.Required("C")
	e.Invalid("KAFKA_BROKERS", "at least one broker needed")
	err := e.Err()
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	require.Equal(t, []string{
		`A: must be an integer (got "x")`,
		`B: must be true or false (got "y")`,
		`C: required`,
		`KAFKA_BROKERS: at least one broker needed`,
	}, lines)
}

func TestLoadCommon(t *testing.T) {
	t.Run("defaults", func(t *testing.T) {
		e := envOf(nil)
		c := config.LoadCommon(e, "order", ":50051", ":9091")
		require.NoError(t, e.Err())
		require.Equal(t, config.Common{
			Service:         "order",
			GRPCAddr:        ":50051",
			HTTPAddr:        ":9091",
			LogLevel:        slog.LevelInfo,
			ShutdownTimeout: 10 * time.Second,
			StartupTimeout:  30 * time.Second,
		}, c)
	})
	t.Run("overrides", func(t *testing.T) {
		e := envOf(map[string]string{
			"GRPC_ADDR":        "127.0.0.1:0",
			"HTTP_ADDR":        "127.0.0.1:0",
			"LOG_LEVEL":        "debug",
			"SHUTDOWN_TIMEOUT": "3s",
			"DRAIN_DELAY":      "5s",
			"STARTUP_TIMEOUT":  "1m",
		})
		c := config.LoadCommon(e, "payment", ":50052", ":9092")
		require.NoError(t, e.Err())
		require.Equal(t, "127.0.0.1:0", c.GRPCAddr)
		require.Equal(t, "127.0.0.1:0", c.HTTPAddr)
		require.Equal(t, slog.LevelDebug, c.LogLevel)
		require.Equal(t, 3*time.Second, c.ShutdownTimeout)
		require.Equal(t, 5*time.Second, c.DrainDelay)
		require.Equal(t, time.Minute, c.StartupTimeout)
	})
	t.Run("bad values are all reported", func(t *testing.T) {
		e := envOf(map[string]string{
			"GRPC_ADDR":        "50051",
			"LOG_LEVEL":        "verbose",
			"SHUTDOWN_TIMEOUT": "0",
			"STARTUP_TIMEOUT":  "soon",
		})
		c := config.LoadCommon(e, "order", ":50051", ":9091")
		err := e.Err()
		require.Error(t, err)
		require.Equal(t, []string{
			`GRPC_ADDR: must be "host:port" or ":port" (got "50051")`,
			`SHUTDOWN_TIMEOUT: must be positive (got "0")`,
			`STARTUP_TIMEOUT: must be a duration such as "500ms", "30s" or "2m" (got "soon")`,
			`LOG_LEVEL: must be one of debug, info, warn, error (got "verbose")`,
		}, strings.Split(err.Error(), "\n"))
		require.Equal(t, 10*time.Second, c.ShutdownTimeout)
		require.Equal(t, slog.LevelInfo, c.LogLevel)
	})
}

func TestEnvURLList(t *testing.T) {
	e := envOf(map[string]string{"DBS": "postgres://a/x, postgresql://b/y", "BAD": "postgres://a/x,redis://b/0,nourl"})
	require.Equal(t, []string{"postgres://a/x", "postgresql://b/y"}, e.URLList("DBS", nil, "postgres", "postgresql"))
	require.Equal(t, []string{"postgres://d/z"}, e.URLList("UNSET", []string{"postgres://d/z"}, "postgres"))
	require.NoError(t, e.Err())

	e.URLList("BAD", nil, "postgres")
	err := e.Err()
	require.ErrorContains(t, err, `BAD: scheme must be one of postgres (got "redis://b/0")`)
	require.ErrorContains(t, err, `BAD: must be an absolute URL with a scheme (got "nourl")`)
}
