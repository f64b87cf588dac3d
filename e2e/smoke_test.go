package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/pgtest"
)

// TestBinariesStartServeAndStop proves the foundation's promise for each of
// the five binaries: it starts against the local PostgreSQL and Redis
// (creating and migrating its own database), reports SERVING on the gRPC
// health service over TLS, lists its API through reflection (development
// mode), serves /metrics, and exits 0 within 5 s of SIGTERM.
func TestBinariesStartServeAndStop(t *testing.T) {
	dbs := newDatabases(t, "order", "payment", "inventory", "orchestrator")
	pki := authtest.New(t)
	wantAPI := map[string]string{
		"order":        "goodgo.order.v1.OrderService",
		"payment":      "goodgo.payment.v1.PaymentService",
		"inventory":    "goodgo.inventory.v1.InventoryService",
		"orchestrator": "goodgo.orchestrator.v1.SagaService",
		"outbox-relay": "grpc.health.v1.Health",
	}
	for _, name := range Services {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			env := pki.Env(name)
			maps.Copy(env, map[string]string{
				"GOODGO_MODE":          "development",
				"GRPC_ADDR":            "127.0.0.1:0",
				"HTTP_ADDR":            "127.0.0.1:0",
				"DATABASE_URL":         dbs[name],
				"OUTBOX_DATABASE_URLS": dbs["order"] + "," + dbs["payment"] + "," + dbs["inventory"],
				"INVENTORY_ADDR":       "127.0.0.1:1", // dialled lazily; unused here
			})
			p := Start(t, name, env)
			grpcAddr := p.LogValue(t, "grpc server listening", "addr", 60*time.Second)
			httpAddr := p.LogValue(t, "ops http server listening", "addr", 10*time.Second)

			conn := pki.Dial(grpcAddr)
			ctx := waitCtx(t, 10*time.Second)
			hc := healthpb.NewHealthClient(conn)
			require.Eventually(t, func() bool {
				r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
				return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
			}, 10*time.Second, 20*time.Millisecond, "health never SERVING")

			require.Contains(t, listServices(t, ctx, conn), wantAPI[name])

			resp, err := http.Get("http://" + httpAddr + "/metrics")
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Contains(t, string(body), "go_goroutines")
			require.Contains(t, string(body), "grpc_server_handled_total")

			require.NoError(t, p.Signal(syscall.SIGTERM))
			code, err := p.Wait(5 * time.Second)
			require.NoError(t, err, "did not exit within 5 s of SIGTERM")
			require.Equal(t, 0, code, "exit code after SIGTERM")
		})
	}
}

// listServices asks the server's reflection service for its services, as
// `grpcurl ADDR list` does.
func listServices(t *testing.T, ctx context.Context, conn *grpc.ClientConn) []string {
	t.Helper()
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"},
	}))
	resp, err := stream.Recv()
	require.NoError(t, err)
	require.NoError(t, stream.CloseSend())
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	slices.Sort(names)
	return names
}

// newDatabases names one fresh database per service, for the binaries to
// create themselves, and drops them when the test ends.
func newDatabases(t *testing.T, services ...string) map[string]string {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	server, err := url.Parse(pgtest.ServerURL())
	require.NoError(t, err)
	urls := make(map[string]string)
	var names []string
	for _, s := range services {
		name := pgtest.Prefix + "e2e_" + suffix + "_" + s
		names = append(names, name)
		u := *server
		u.Path = "/" + name
		urls[s] = u.String()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgtest.ServerURL())
		if err != nil {
			t.Errorf("drop test databases: %v", err)
			return
		}
		defer conn.Close(ctx)
		for _, name := range names {
			if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
				t.Errorf("drop %s: %v", name, err)
			}
		}
	})
	return urls
}
