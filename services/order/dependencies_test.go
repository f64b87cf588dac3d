package main

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/tcpproxy"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	"github.com/goodgo/goodgo/services/order/internal/fakeinventory"
)

// TestDatabaseAndRedisOutagesMidRun cuts PostgreSQL, then Redis, under the
// running service (issue 10: losing a dependency mid-run must never stop a
// binary, and readiness must say what is missing). Without PostgreSQL the
// service is not ready and says why; without Redis it stays ready, listed
// as degraded, and still takes orders; each time it recovers on its own.
// order, payment and inventory share this behaviour (domainservice).
func TestDatabaseAndRedisOutagesMidRun(t *testing.T) {
	t.Parallel()
	dbURL, _ := pgtest.NewDatabase(t, nil)
	pg := tcpproxy.Start(t, "127.0.0.1:5432")
	rd := tcpproxy.Start(t, "127.0.0.1:6379")
	u, err := url.Parse(pgtest.AsRole(dbURL, "goodgo_order"))
	require.NoError(t, err)
	u.Host = pg.Addr()
	svc := startService(t, dbURL, map[string]string{"DATABASE_URL": u.String(), "REDIS_URL": "redis://" + rd.Addr() + "/0"},
		fakeinventory.Product("SKU-1", "Widget", "USD", 1999, 10))
	place := func() error {
		user := uuid.NewString()
		ctx := metadata.AppendToOutgoingContext(authtest.AsUser(context.Background(), svc.pki.Token(user)), idempotency.MetadataKey, uuid.NewString())
		_, err := orderv1.NewOrderServiceClient(svc.pki.Dial(svc.grpcAddr)).PlaceOrder(ctx, &orderv1.PlaceOrderRequest{
			CustomerId:      user,
			Items:           []*orderv1.OrderItemInput{{Sku: "SKU-1", Quantity: 1}},
			ShippingAddress: &orderv1.Address{Name: "Ada", Line1: "1 Main St", City: "Boston", PostalCode: "02110", CountryCode: "US"},
			PaymentMethod:   "tok_visa",
		})
		return err
	}
	svc.waitReadyz(t, http.StatusOK, "ok\n")
	require.NoError(t, place())

	pg.Cut()
	svc.waitReadyz(t, http.StatusServiceUnavailable, "not ready: postgres (connection refused)\n")
	require.Error(t, place(), "no order without the database")
	pg.Restore()
	svc.waitReadyz(t, http.StatusOK, "ok\n")
	require.NoError(t, place())

	rd.Cut()
	svc.waitReadyz(t, http.StatusOK, "ok\ndegraded: redis (connection refused)\n")
	require.NoError(t, place(), "PlaceOrder runs without Redis")
	rd.Restore()
	svc.waitReadyz(t, http.StatusOK, "ok\n")
	require.NoError(t, place())
	svc.stop(t) // run was serving all along and stops cleanly
}

// waitReadyz waits until /readyz answers code with body, failing the test
// when run returns meanwhile.
func (s *service) waitReadyz(t *testing.T, code int, body string) {
	t.Helper()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-s.done:
			t.Fatalf("run returned while waiting for readiness: %v", err)
		default:
		}
		gotCode, gotBody := readyz(t, s.httpAddr)
		if gotCode == code && gotBody == body {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz never answered %d %q (last: %d %q)", code, body, gotCode, gotBody)
		}
		<-tick.C
	}
}

// readyz returns /readyz's status and body (0 and the error when it does
// not answer).
func readyz(t *testing.T, addr string) (int, string) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(b)
}
