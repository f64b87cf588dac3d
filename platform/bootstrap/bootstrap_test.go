package bootstrap_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/bootstrap"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/opshttp"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
)

// migrations is a domain service's schema in small: the outbox role checks
// need nothing more.
var migrations = fstest.MapFS{
	"000001_things.up.sql":   {Data: []byte("CREATE TABLE things (id bigint PRIMARY KEY);")},
	"000001_things.down.sql": {Data: []byte("DROP TABLE things;")},
}

// env is a domain service's environment on free ports, against a fresh
// database (migrated at start by its owner) and the local Redis,
// development mode (the superuser's excess privileges are only logged).
func env(t *testing.T, pki *authtest.PKI) map[string]string {
	dbURL, _ := pgtest.NewDatabase(t, nil)
	env := pki.Env("order")
	maps.Copy(env, map[string]string{
		"GOODGO_MODE":          "development",
		"GRPC_ADDR":            "127.0.0.1:0",
		"HTTP_ADDR":            "127.0.0.1:0",
		"DATABASE_URL":         dbURL,
		"MIGRATE_DATABASE_URL": dbURL,
		"OTEL_SDK_DISABLED":    "true",
		"STARTUP_TIMEOUT":      "10s",
	})
	return env
}

func load(t *testing.T, env map[string]string) bootstrap.DomainConfig {
	t.Helper()
	e := config.NewEnv(servicetest.Lookup(env))
	cfg := bootstrap.LoadDomainConfig(e, "order", "127.0.0.1:50051", "127.0.0.1:9101")
	require.NoError(t, e.Err())
	return cfg
}

// serve runs what a domain service's run does, with the checks and
// background work given.
func serve(cfg bootstrap.DomainConfig, lookup func(string) (string, bool), s bootstrap.Server) func(context.Context, io.Writer) error {
	return func(ctx context.Context, stdout io.Writer) error {
		kit, err := bootstrap.OpenDomain(ctx, cfg, "v-test", migrations, nil, stdout, lookup)
		if err != nil {
			return err
		}
		defer kit.Close(ctx)
		return kit.Serve(ctx, s)
	}
}

func TestServesHealthAndStopsOnCancel(t *testing.T) {
	t.Parallel()
	pki := authtest.New(t)
	e := env(t, pki)
	p := servicetest.Start(t, "order", serve(load(t, e), servicetest.Lookup(e), bootstrap.Server{
		Register: func(grpc.ServiceRegistrar) {},
		Checks:   []opshttp.Check{{Name: "neighbour", Optional: true, Fn: func(context.Context) error { return errors.New("down") }}},
	}))
	require.Equal(t, "v-test", p.Logs.Find("order started")["version"])

	conn := pki.DialAs("orchestrator", "order", p.GRPCAddr)
	resp, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())

	code, body := servicetest.HTTPGet(t, "http://"+p.HTTPAddr+"/healthz")
	require.Equal(t, http.StatusOK, code, body)
	code, body = servicetest.HTTPGet(t, "http://"+p.HTTPAddr+"/readyz")
	require.Equal(t, http.StatusOK, code, "an optional check failing leaves it ready: %s", body)
	require.Contains(t, body, "neighbour", "the binary's own checks are listed")
	code, body = servicetest.HTTPGet(t, "http://"+p.HTTPAddr+"/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "idempotency_", "the guard's metrics are on the kit's registry")

	p.Stop(t)
	code, _ = servicetest.HTTPGet(t, "http://"+p.HTTPAddr+"/healthz")
	require.Zero(t, code, "the ops server is closed once Serve returns")
}

func TestBackgroundWorkEndingStopsTheBinary(t *testing.T) {
	t.Parallel()
	e := env(t, authtest.New(t))
	broken := errors.New("consumer broke")
	var logs servicetest.Logs
	err := serve(load(t, e), servicetest.Lookup(e), bootstrap.Server{
		Register: func(grpc.ServiceRegistrar) {},
		Run:      []func(context.Context) error{func(context.Context) error { return broken }},
	})(context.Background(), &logs)
	require.ErrorIs(t, err, broken)
	require.NotNil(t, logs.Find("order started"))
}

func TestStartFailsClearly(t *testing.T) {
	t.Parallel()
	pki := authtest.New(t)
	for name, tc := range map[string]struct {
		env  map[string]string
		want string
	}{
		"PostgreSQL unreachable": {map[string]string{
			"DATABASE_URL":         "postgres://postgres@127.0.0.1:1/goodgo_order?sslmode=disable", // nobody listens on port 1
			"MIGRATE_DATABASE_URL": "postgres://postgres@127.0.0.1:1/goodgo_order?sslmode=disable",
		}, "127.0.0.1:1"},
		"Redis unreachable": {map[string]string{"REDIS_URL": "redis://127.0.0.1:1/0"}, "redis"},
		"another binary's certificate": {map[string]string{
			"TLS_CERT_FILE": pki.Paths.Cert("payment"), "TLS_KEY_FILE": pki.Paths.Key("payment"),
		}, "certificate of spiffe://goodgo/payment"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := env(t, pki)
			maps.Copy(e, tc.env)
			e["STARTUP_TIMEOUT"] = "300ms"
			var logs servicetest.Logs
			err := serve(load(t, e), servicetest.Lookup(e), bootstrap.Server{})(context.Background(), &logs)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, logs.Find("order started"))
		})
	}

	t.Run("a bad setting is named", func(t *testing.T) {
		t.Parallel()
		e := config.NewEnv(servicetest.Lookup(map[string]string{"GOODGO_MODE": "development", "REDIS_URL": "::"}))
		bootstrap.LoadDomainConfig(e, "order", "127.0.0.1:50051", "127.0.0.1:9101")
		require.ErrorContains(t, e.Err(), "REDIS_URL: ")
	})
}
