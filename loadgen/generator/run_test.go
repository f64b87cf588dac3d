package generator

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

// fakeConn is a connection no test calls.
type fakeConn struct{ grpc.ClientConnInterface }

// fakeOrders is an order service that settles an order on its third
// GetOrder: CANCELLED for tok_decline or SKU-LIMITED, CONFIRMED otherwise.
// A key's first PlaceOrder is rate limited every fifth order; a repeated
// key returns the order it made.
type fakeOrders struct {
	orderv1.UnimplementedOrderServiceServer
	mu     sync.Mutex
	byKey  map[string]*orderv1.Order
	polls  map[string]int
	owner  map[string]string // order id → bearer token
	fate   map[string]orderv1.OrderStatus
	limits int
}

func (f *fakeOrders) PlaceOrder(ctx context.Context, req *orderv1.PlaceOrderRequest) (*orderv1.PlaceOrderResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	key, auth := first(md, "idempotency-key"), first(md, "authorization")
	if key == "" || !strings.HasPrefix(auth, "Bearer tok-") || strings.TrimPrefix(auth, "Bearer tok-") != req.GetCustomerId() {
		return nil, status.Error(codes.Unauthenticated, "no key or not the shopper's token")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if o, ok := f.byKey[key]; ok {
		return &orderv1.PlaceOrderResponse{Order: o}, nil
	}
	if strings.HasSuffix(key, "0") || strings.HasSuffix(key, "5") {
		if _, seen := f.polls[key]; !seen {
			f.polls[key] = 0
			f.limits++
			st, _ := status.New(codes.ResourceExhausted, "rate limit").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(5 * time.Millisecond)})
			return nil, st.Err()
		}
	}
	now := timestamppb.Now()
	o := &orderv1.Order{OrderId: uuid.NewString(), CustomerId: req.GetCustomerId(), Status: orderv1.OrderStatus_ORDER_STATUS_PENDING, CreateTime: now, UpdateTime: now}
	fate := orderv1.OrderStatus_ORDER_STATUS_CONFIRMED
	if req.GetPaymentMethod() == "tok_decline" || req.GetItems()[0].GetSku() == "SKU-LIMITED" {
		fate = orderv1.OrderStatus_ORDER_STATUS_CANCELLED
	}
	f.byKey[key], f.owner[o.OrderId], f.fate[o.OrderId] = o, auth, fate
	return &orderv1.PlaceOrderResponse{Order: o}, nil
}

func (f *fakeOrders) GetOrder(ctx context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.owner[req.GetOrderId()] != first(md, "authorization") {
		return nil, status.Error(codes.NotFound, "no such order")
	}
	f.polls[req.GetOrderId()]++
	var o *orderv1.Order
	for _, v := range f.byKey {
		if v.GetOrderId() == req.GetOrderId() {
			o = v
		}
	}
	if f.polls[req.GetOrderId()] >= 3 && o.GetStatus() == orderv1.OrderStatus_ORDER_STATUS_PENDING {
		o.Status = f.fate[o.OrderId]
		o.UpdateTime = timestamppb.New(o.GetCreateTime().AsTime().Add(42 * time.Millisecond))
	}
	return &orderv1.GetOrderResponse{Order: o}, nil
}

func first(md metadata.MD, k string) string {
	if v := md.Get(k); len(v) > 0 {
		return v[0]
	}
	return ""
}

func startFake(t *testing.T) (*fakeOrders, *grpc.ClientConn) {
	t.Helper()
	f := &fakeOrders{byKey: map[string]*orderv1.Order{}, polls: map[string]int{}, owner: map[string]string{}, fate: map[string]orderv1.OrderStatus{}}
	return f, serveFake(t, func(srv *grpc.Server) { orderv1.RegisterOrderServiceServer(srv, f) })
}

// serveFake serves what register registers on an in-memory listener until
// the test ends, and returns a client of it.
func serveFake(t *testing.T, register func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	register(srv)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///fake",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func shoppers(n int) []Shopper {
	s := make([]Shopper, n)
	for i := range s {
		id := uuid.NewString()
		s[i] = Shopper{ID: id, Token: "tok-" + id}
	}
	return s
}

func TestRunFollowsEveryOrderToItsEnd(t *testing.T) {
	t.Parallel()
	f, conn := startFake(t)
	mix, err := ParseMix(DefaultMix)
	require.NoError(t, err)
	var snaps []Snapshot
	s, err := Run(context.Background(), Config{
		Order: conn, Shoppers: shoppers(3), Concurrency: 4, Count: 40, Mix: mix, RetryFraction: 0.25,
		PollInterval: time.Millisecond, ProgressInterval: 5 * time.Millisecond,
		Progress: func(s Snapshot) { snaps = append(snaps, s) },
	})
	require.NoError(t, err)

	require.False(t, s.Interrupted)
	require.Equal(t, "concurrency 4", s.Mode)
	require.Equal(t, DefaultMix, s.Mix)
	require.Equal(t, 40, s.Attempted)
	require.Equal(t, 40, s.Placed)
	require.Equal(t, 40, s.Terminal)
	require.Zero(t, s.Unexpected)
	require.Equal(t, RetrySummary{Sent: 10, SameOrder: 10}, s.Retries)
	f.mu.Lock()
	require.Equal(t, f.limits, s.Throttled, "every ResourceExhausted waited out")
	require.Len(t, f.byKey, 40, "a retry with the same key makes no new order")
	f.mu.Unlock()
	require.Equal(t, Millis(42*time.Millisecond), s.Saga.P50, "saga time from the order's own timestamps")
	require.GreaterOrEqual(t, s.Observed.P50, s.Place.P50)

	byKind := map[Kind]KindSummary{}
	for _, k := range s.Kinds {
		byKind[k.Kind] = k
	}
	require.Equal(t, 28, byKind[KindGood].Confirmed)
	require.Equal(t, 4, byKind[KindHot].Confirmed)
	require.Equal(t, 4, byKind[KindDecline].Cancelled)
	require.Equal(t, 4, byKind[KindOutOfStock].Cancelled)

	require.NotEmpty(t, snaps)
	last := snaps[len(snaps)-1]
	require.Equal(t, 40, last.Done)
	require.Zero(t, last.InFlight)
}

func TestRunTimesOutAnOrderThatNeverEnds(t *testing.T) {
	t.Parallel()
	_, conn := startFake(t)
	s, err := Run(context.Background(), Config{
		Order: conn, Shoppers: shoppers(1), Concurrency: 1, Count: 1, Mix: Mix{{KindGood, 1}},
		PollInterval: time.Hour, FollowTimeout: 200 * time.Millisecond,
	})
	require.NoError(t, err)
	require.Equal(t, 1, s.Placed)
	require.Equal(t, 1, s.TimedOut)
	require.Zero(t, s.Terminal)
}

func TestRunStopsWhenTheContextEnds(t *testing.T) {
	t.Parallel()
	_, conn := startFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	placed := make(chan struct{}, 1)
	time.AfterFunc(time.Minute, cancel) // a safety net only
	go func() {
		<-placed
		cancel()
	}()
	s, err := Run(ctx, Config{
		Order: conn, Shoppers: shoppers(1), Concurrency: 2, Duration: time.Hour, Mix: Mix{{KindGood, 1}},
		PollInterval: time.Hour, ProgressInterval: time.Millisecond,
		Progress: func(s Snapshot) {
			if s.Placed >= 2 {
				select {
				case placed <- struct{}{}:
				default:
				}
			}
		},
	})
	require.NoError(t, err)
	require.True(t, s.Interrupted)
	require.Equal(t, 2, s.Attempted)
	require.Equal(t, 2, s.Abandoned)
	require.Zero(t, s.TimedOut)
}

func TestRunRefusesABadConfig(t *testing.T) {
	t.Parallel()
	_, err := Run(context.Background(), Config{})
	require.ErrorContains(t, err, "loadgen: ")
}
