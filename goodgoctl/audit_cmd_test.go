package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
)

// fakeSystem serves the four APIs over TLS on one address: one confirmed
// order, its payment captured (or refunded, when refunded is set) and its
// stock reserved. Calls without the operator's token are UNAUTHENTICATED.
type fakeSystem struct {
	orderv1.UnimplementedOrderServiceServer
	paymentv1.UnimplementedPaymentServiceServer
	inventoryv1.UnimplementedInventoryServiceServer
	orchestratorv1.UnimplementedSagaServiceServer

	token    string
	mu       sync.Mutex
	refunded bool
}

const orderID = "0190a0c4-0000-7000-8000-000000000001"

func (f *fakeSystem) auth(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+f.token {
		return status.Error(codes.Unauthenticated, "no operator token")
	}
	return nil
}

func (f *fakeSystem) ListSagas(ctx context.Context, _ *orchestratorv1.ListSagasRequest) (*orchestratorv1.ListSagasResponse, error) {
	return &orchestratorv1.ListSagasResponse{Sagas: []*orchestratorv1.Saga{{
		SagaId: "s1", SagaType: "order_checkout", CorrelationId: orderID,
		State: orchestratorv1.SagaState_SAGA_STATE_COMPLETED, Deadline: timestamppb.New(time.Now()),
	}}}, f.auth(ctx)
}

func (f *fakeSystem) GetOrder(ctx context.Context, _ *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	return &orderv1.GetOrderResponse{Order: &orderv1.Order{
		OrderId: orderID, Status: orderv1.OrderStatus_ORDER_STATUS_CONFIRMED,
		Total: &commonv1.Money{CurrencyCode: "USD", AmountMinor: 100}, Items: []*commonv1.LineItem{{Sku: "K", Quantity: 1}},
	}}, f.auth(ctx)
}

func (f *fakeSystem) GetPayment(ctx context.Context, _ *paymentv1.GetPaymentRequest) (*paymentv1.GetPaymentResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := &paymentv1.Payment{
		PaymentId: "p1", OrderId: orderID, Status: paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED,
		Amount: &commonv1.Money{CurrencyCode: "USD", AmountMinor: 100}, Refunded: &commonv1.Money{CurrencyCode: "USD"},
	}
	if f.refunded {
		p.Status, p.Refunded.AmountMinor = paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED, 100
	}
	return &paymentv1.GetPaymentResponse{Payment: p}, f.auth(ctx)
}

func (f *fakeSystem) GetReservation(ctx context.Context, _ *inventoryv1.GetReservationRequest) (*inventoryv1.GetReservationResponse, error) {
	return &inventoryv1.GetReservationResponse{Reservation: &inventoryv1.Reservation{
		ReservationId: "r1", OrderId: orderID, Status: inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED,
		Items: []*inventoryv1.ReservationItem{{Sku: "K", Quantity: 1}},
	}}, f.auth(ctx)
}

func (f *fakeSystem) GetProducts(ctx context.Context, _ *inventoryv1.GetProductsRequest) (*inventoryv1.GetProductsResponse, error) {
	return &inventoryv1.GetProductsResponse{Products: []*inventoryv1.Product{{Sku: "K", Available: 9, Reserved: 1}}}, f.auth(ctx)
}

// serve starts f over TLS with the order service's certificate of pki and
// returns its address.
func serve(t *testing.T, pki *authtest.PKI, f *fakeSystem) string {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(pki.Paths.Cert("order"), pki.Paths.Key("order"))
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}})))
	orderv1.RegisterOrderServiceServer(srv, f)
	paymentv1.RegisterPaymentServiceServer(srv, f)
	inventoryv1.RegisterInventoryServiceServer(srv, f)
	orchestratorv1.RegisterSagaServiceServer(srv, f)
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func auditArgs(pki *authtest.PKI, addr, tok string, extra ...string) []string {
	return append([]string{"audit", "-cacert", pki.Paths.CA(), "-token", tok,
		"-order", addr, "-payment", addr, "-inventory", addr, "-orchestrator", addr}, extra...)
}

func TestAuditPrintsViolationsAndExitsOneOnThem(t *testing.T) {
	pki := authtest.New(t)
	f := &fakeSystem{token: pki.Token("ops-1", caller.RoleOperator)}
	addr := serve(t, pki, f)

	var out, errOut bytes.Buffer
	require.NoError(t, run(auditArgs(pki, addr, f.token), &out, &errOut))
	require.Contains(t, out.String(), "audited 1 orders (0 in flight, 1 products; stock counters compared): 0 violations")

	f.mu.Lock()
	f.refunded = true
	f.mu.Unlock()
	out.Reset()
	require.ErrorIs(t, run(auditArgs(pki, addr, f.token), &out, &errOut), errViolations)
	require.Contains(t, out.String(), "VIOLATION confirmed_not_charged [order="+orderID+" payment=p1] CONFIRMED order's payment is REFUNDED")
	require.Contains(t, out.String(), "VIOLATION money_unbalanced [currency=USD]")
	require.Contains(t, out.String(), ": 2 violations")

	err := run(auditArgs(pki, addr, "not-the-token"), &out, &errOut)
	require.ErrorContains(t, err, "Unauthenticated")
	require.NotErrorIs(t, err, errViolations)
	require.ErrorContains(t, run([]string{"audit", "-token", ""}, &out, &errOut), "-token, -token-file or GOODGO_TOKEN is required")
}

func TestAuditIntervalExportsMetrics(t *testing.T) {
	pki := authtest.New(t)
	f := &fakeSystem{token: pki.Token("ops-1", caller.RoleOperator), refunded: true}
	addr := serve(t, pki, f)
	flags, err := parseAuditFlags(auditArgs(pki, addr, f.token, "-interval", "20ms", "-metrics-addr", "127.0.0.1:0")[1:], io.Discard)
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	metricsAddr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- auditLoop(ctx, flags, io.Discard, io.Discard, func(a string) { metricsAddr <- a })
	}()
	url := "http://" + <-metricsAddr + "/metrics"
	scrape := func() string {
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(b)
	}
	require.Eventually(t, func() bool {
		return strings.Contains(scrape(), `consistency_audit_runs_total{result="violations"} 2`)
	}, 10*time.Second, 10*time.Millisecond)
	m := scrape()
	require.Contains(t, m, `consistency_violations{kind="confirmed_not_charged"} 1`)
	require.Contains(t, m, `consistency_violations{kind="stock_negative"} 0`)
	require.Contains(t, m, "consistency_audit_last_success_timestamp_seconds ")

	f.mu.Lock()
	f.refunded = false
	f.mu.Unlock()
	require.Eventually(t, func() bool {
		return strings.Contains(scrape(), `consistency_violations{kind="confirmed_not_charged"} 0`)
	}, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}
