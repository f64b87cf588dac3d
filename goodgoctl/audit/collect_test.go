package audit_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/goodgo/goodgo/goodgoctl/audit"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
)

// fakeAPIs answer the auditor's reads from maps, as the services would:
// sagas newest first in pages of two, NOT_FOUND for what is absent. The
// embedded clients are nil: any other call panics.
type fakeAPIs struct {
	orderv1.OrderServiceClient
	paymentv1.PaymentServiceClient
	inventoryv1.InventoryServiceClient
	orchestratorv1.SagaServiceClient

	mu           sync.Mutex
	sagas        []*orchestratorv1.Saga // newest first
	orders       map[string]*orderv1.Order
	payments     map[string]*paymentv1.Payment
	reservations map[string]*inventoryv1.Reservation
	products     []*inventoryv1.Product
	// throttle refuses the first call of each method for the rate limit.
	throttled map[string]bool
	calls     map[string]int
	// onProducts runs when the catalog is read (a saga starting meanwhile).
	onProducts func()
}

func (f *fakeAPIs) clients() audit.Clients {
	return audit.Clients{Orders: f, Payments: f, Inventory: f, Sagas: f}
}

func (f *fakeAPIs) call(method string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[method]++
	if f.throttled != nil && !f.throttled[method] {
		f.throttled[method] = true
		st, _ := status.New(codes.ResourceExhausted, "rate limit").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Millisecond)})
		return st.Err()
	}
	return nil
}

func notFound() error { return status.Error(codes.NotFound, "not found") }

func (f *fakeAPIs) ListSagas(_ context.Context, req *orchestratorv1.ListSagasRequest, _ ...grpc.CallOption) (*orchestratorv1.ListSagasResponse, error) {
	if err := f.call("ListSagas"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	start := 0
	if req.GetPageToken() != "" {
		start = int(req.GetPageToken()[0] - '0')
	}
	size := min(int(req.GetPageSize()), 2)
	end := min(start+size, len(f.sagas))
	resp := &orchestratorv1.ListSagasResponse{Sagas: f.sagas[start:end]}
	if end < len(f.sagas) {
		resp.NextPageToken = string(rune('0' + end))
	}
	return resp, nil
}

func (f *fakeAPIs) GetOrder(_ context.Context, req *orderv1.GetOrderRequest, _ ...grpc.CallOption) (*orderv1.GetOrderResponse, error) {
	if err := f.call("GetOrder"); err != nil {
		return nil, err
	}
	if o := f.orders[req.GetOrderId()]; o != nil {
		return &orderv1.GetOrderResponse{Order: o}, nil
	}
	return nil, notFound()
}

func (f *fakeAPIs) GetPayment(_ context.Context, req *paymentv1.GetPaymentRequest, _ ...grpc.CallOption) (*paymentv1.GetPaymentResponse, error) {
	if err := f.call("GetPayment"); err != nil {
		return nil, err
	}
	if p := f.payments[req.GetOrderId()]; p != nil {
		return &paymentv1.GetPaymentResponse{Payment: p}, nil
	}
	return nil, notFound()
}

func (f *fakeAPIs) GetReservation(_ context.Context, req *inventoryv1.GetReservationRequest, _ ...grpc.CallOption) (*inventoryv1.GetReservationResponse, error) {
	if err := f.call("GetReservation"); err != nil {
		return nil, err
	}
	if r := f.reservations[req.GetOrderId()]; r != nil {
		return &inventoryv1.GetReservationResponse{Reservation: r}, nil
	}
	return nil, notFound()
}

func (f *fakeAPIs) GetProducts(_ context.Context, req *inventoryv1.GetProductsRequest, _ ...grpc.CallOption) (*inventoryv1.GetProductsResponse, error) {
	if err := f.call("GetProducts"); err != nil {
		return nil, err
	}
	if f.onProducts != nil {
		f.onProducts()
	}
	if req.GetPageToken() == "" {
		return &inventoryv1.GetProductsResponse{Products: f.products[:1], NextPageToken: "more"}, nil
	}
	return &inventoryv1.GetProductsResponse{Products: f.products[1:]}, nil
}

func usd(n int64) *commonv1.Money { return &commonv1.Money{CurrencyCode: "USD", AmountMinor: n} }

// system is a confirmed order (a), a cancelled one (b, declined) and one
// still running (c), with a saga of another type among them.
func system() *fakeAPIs {
	deadline := timestamppb.New(now.Add(30 * time.Second))
	return &fakeAPIs{
		sagas: []*orchestratorv1.Saga{
			{SagaId: "sc", SagaType: audit.OrderSagaType, CorrelationId: "c", State: orchestratorv1.SagaState_SAGA_STATE_RUNNING, Deadline: deadline},
			{SagaId: "sx", SagaType: "something_else", CorrelationId: "x", State: orchestratorv1.SagaState_SAGA_STATE_COMPLETED},
			{SagaId: "sb", SagaType: audit.OrderSagaType, CorrelationId: "b", State: orchestratorv1.SagaState_SAGA_STATE_COMPENSATED, FailureReason: "declined", Deadline: deadline},
			{SagaId: "sa", SagaType: audit.OrderSagaType, CorrelationId: "a", State: orchestratorv1.SagaState_SAGA_STATE_COMPLETED, Deadline: deadline},
		},
		orders: map[string]*orderv1.Order{
			"a": {OrderId: "a", Status: orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, Total: usd(300),
				Items: []*commonv1.LineItem{{Sku: "K", Quantity: 2, UnitPrice: usd(100)}, {Sku: "M", Quantity: 1, UnitPrice: usd(100)}}},
			"b": {OrderId: "b", Status: orderv1.OrderStatus_ORDER_STATUS_CANCELLED, Total: usd(100), CancelReason: "payment declined",
				Items: []*commonv1.LineItem{{Sku: "M", Quantity: 1, UnitPrice: usd(100)}}},
			"c": {OrderId: "c", Status: orderv1.OrderStatus_ORDER_STATUS_PENDING, Total: usd(100),
				Items: []*commonv1.LineItem{{Sku: "M", Quantity: 1, UnitPrice: usd(100)}}},
		},
		payments: map[string]*paymentv1.Payment{
			"a": {PaymentId: "pa", OrderId: "a", Status: paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED, Amount: usd(300), Refunded: usd(0)},
			"b": {PaymentId: "pb", OrderId: "b", Status: paymentv1.PaymentStatus_PAYMENT_STATUS_DECLINED, Amount: usd(100), Refunded: usd(0), DeclineReason: "card_declined"},
			"c": {PaymentId: "pc", OrderId: "c", Status: paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED, Amount: usd(100), Refunded: usd(0)},
		},
		reservations: map[string]*inventoryv1.Reservation{
			"a": {ReservationId: "ra", OrderId: "a", Status: inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED,
				Items: []*inventoryv1.ReservationItem{{Sku: "K", Quantity: 2}, {Sku: "M", Quantity: 1}}},
		},
		products: []*inventoryv1.Product{{Sku: "K", Available: 3, Reserved: 2}, {Sku: "M", Available: 7, Reserved: 1}},
		calls:    map[string]int{},
	}
}

func TestCollectReadsTheSystemThroughTheAPIs(t *testing.T) {
	f := system()
	f.throttled = map[string]bool{} // every method's first call is refused for the rate limit
	s, err := audit.Collect(context.Background(), f.clients(), audit.CollectOptions{Concurrency: 2, Now: func() time.Time { return now }})
	require.NoError(t, err)

	require.Equal(t, now, s.TakenAt)
	require.Len(t, s.Sagas, 3, "the other saga type is left out")
	require.Equal(t, &audit.Saga{ID: "sb", OrderID: "b", State: audit.SagaCompensated, FailureReason: "declined", Deadline: now.Add(30 * time.Second)}, s.Sagas["b"][0])
	require.Equal(t, &audit.Order{ID: "a", Status: audit.OrderConfirmed, Currency: "USD", Total: 300, Lines: map[string]int64{"K": 2, "M": 1}}, s.Orders["a"])
	require.Equal(t, audit.OrderPending, s.Orders["c"].Status, "a running saga's order is read")
	require.Equal(t, &audit.Payment{ID: "pb", OrderID: "b", Status: audit.PaymentDeclined, Currency: "USD", Amount: 100, DeclineReason: "card_declined"}, s.Payments["b"])
	require.NotContains(t, s.Payments, "c", "a running saga's payment is not read")
	require.Equal(t, &audit.Reservation{ID: "ra", OrderID: "a", Status: audit.ReservationReserved, Lines: map[string]int64{"K": 2, "M": 1}}, s.Reservations["a"])
	require.NotContains(t, s.Reservations, "b", "NOT_FOUND is no reservation")
	require.Equal(t, map[string]*audit.Product{"K": {SKU: "K", Available: 3, Reserved: 2}, "M": {SKU: "M", Available: 7, Reserved: 1}}, s.Products)
	require.False(t, s.Quiescent, "a saga was running")
	require.Equal(t, 2, f.calls["GetPayment"]-1, "payments of the two ended sagas (and the refused first call)")

	r := audit.Check(s, time.Minute)
	require.Empty(t, r.Violations)
	require.Equal(t, 2, r.Audited)
	require.Equal(t, 1, r.InFlight)
}

func TestCollectIsQuiescentOnlyIfNoSagaRanOrStarted(t *testing.T) {
	settle := func(f *fakeAPIs) {
		f.sagas[0].State = orchestratorv1.SagaState_SAGA_STATE_COMPENSATED
		f.orders["c"].Status = orderv1.OrderStatus_ORDER_STATUS_CANCELLED
		f.payments["c"].Status, f.payments["c"].Refunded = paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED, usd(100)
	}
	f := system()
	settle(f)
	s, err := audit.Collect(context.Background(), f.clients(), audit.CollectOptions{})
	require.NoError(t, err)
	require.True(t, s.Quiescent)
	require.Empty(t, audit.Check(s, time.Minute).Violations)

	f = system()
	settle(f)
	f.onProducts = func() {
		f.sagas = append([]*orchestratorv1.Saga{{SagaId: "sd", SagaType: audit.OrderSagaType, CorrelationId: "d", State: orchestratorv1.SagaState_SAGA_STATE_RUNNING}}, f.sagas...)
	}
	s, err = audit.Collect(context.Background(), f.clients(), audit.CollectOptions{})
	require.NoError(t, err)
	require.False(t, s.Quiescent, "a saga started while the catalog was read")
}

func TestCollectFailsOnAnythingButNotFound(t *testing.T) {
	f := system()
	f.orders["a"] = nil
	s, err := audit.Collect(context.Background(), f.clients(), audit.CollectOptions{})
	require.NoError(t, err)
	require.NotContains(t, s.Orders, "a")
	require.Equal(t, 1, audit.Check(s, time.Minute).Count()[audit.KindSagaMismatch], "the saga of an unknown order")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	c := system().clients()
	c.Sagas = &deniedSagas{}
	_, err = audit.Collect(ctx, c, audit.CollectOptions{})
	require.Equal(t, codes.PermissionDenied, status.Code(err), "%v", err)
}

// deniedSagas refuses ListSagas as a service refuses a caller who is not
// an operator.
type deniedSagas struct {
	orchestratorv1.SagaServiceClient
}

func (*deniedSagas) ListSagas(context.Context, *orchestratorv1.ListSagasRequest, ...grpc.CallOption) (*orchestratorv1.ListSagasResponse, error) {
	return nil, status.Error(codes.PermissionDenied, "operators only")
}
