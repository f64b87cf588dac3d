package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"maps"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/saga"
	"github.com/goodgo/goodgo/platform/servicetest"
	"github.com/goodgo/goodgo/platform/token"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
)

// neighbours are fake payment, inventory and order services, each served
// with its own certificate: they record every call (method, order,
// idempotency key, the verified calling service and the user its
// on-behalf-of assertion names) and behave like the real ones on the paths
// the saga takes: "tok_decline" is declined, SKU "SHORT" is out of stock,
// and a repeated key replays.
type neighbours struct {
	paymentv1.UnimplementedPaymentServiceServer
	inventoryv1.UnimplementedInventoryServiceServer
	orderv1.UnimplementedOrderServiceServer

	assertions map[string]*token.AssertionVerifier // by service served

	mu      sync.Mutex
	calls   []call
	blockOn string        // method that waits for release before answering
	release chan struct{} // closed to let blocked calls answer
	// fail, by method, answers the n-th call (from 1) of an order with the
	// error it returns, after the call took effect (a reply lost or turned
	// into an error); nil answers normally.
	fail map[string]func(n int) error
	// pending are the orders ListStalePendingOrders lists until they are
	// confirmed or cancelled (reconcile_test.go).
	pending []*orderv1.PendingOrder
}

// failOn sets n.fail for method.
func (n *neighbours) failOn(method string, f func(n int) error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail == nil {
		n.fail = map[string]func(int) error{}
	}
	n.fail[method] = f
}

type call struct {
	Method, OrderID, Key, Reason string
	// Caller is the verified calling service; User whom it acted for, or
	// why its assertion was refused.
	Caller, User string
}

func (n *neighbours) record(ctx context.Context, service, method, orderID, reason string) error {
	md, _ := metadata.FromIncomingContext(ctx)
	c := call{Method: method, OrderID: orderID, Reason: reason}
	if v := md.Get(idempotency.MetadataKey); len(v) == 1 {
		c.Key = v[0]
	}
	peer, _ := mtls.PeerFrom(ctx)
	c.Caller = peer.Service
	if v := md.Get(token.AssertionMetadataKey); len(v) == 1 {
		a, err := n.assertions[service].Verify(v[0], peer.Service)
		if c.User = a.User; err != nil {
			c.User = "refused: " + err.Error()
		}
	}
	n.mu.Lock()
	n.calls = append(n.calls, c)
	block, release := n.blockOn == method, n.release
	nth := 0
	for _, o := range n.calls {
		if o.Method == method && o.OrderID == orderID {
			nth++
		}
	}
	fail := n.fail[method]
	n.mu.Unlock()
	if c.Key == "" {
		return status.Error(codes.InvalidArgument, "idempotency-key metadata is required")
	}
	if block {
		select {
		case <-release:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
	if fail != nil {
		return fail(nth)
	}
	return nil
}

// of returns the calls about order id, in order.
func (n *neighbours) of(orderID string) []call {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []call
	for _, c := range n.calls {
		if c.OrderID == orderID {
			out = append(out, c)
		}
	}
	return out
}

func (n *neighbours) methodsOf(orderID string) []string {
	var out []string
	for _, c := range n.of(orderID) {
		out = append(out, c.Method)
	}
	return out
}

func (n *neighbours) ProcessPayment(ctx context.Context, req *paymentv1.ProcessPaymentRequest) (*paymentv1.ProcessPaymentResponse, error) {
	if err := n.record(ctx, "payment", "ProcessPayment", req.GetOrderId(), ""); err != nil {
		return nil, err
	}
	p := &paymentv1.Payment{OrderId: req.GetOrderId(), Amount: req.GetAmount(), Status: paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED}
	if req.GetPaymentMethod() == "tok_decline" {
		p.Status, p.DeclineReason = paymentv1.PaymentStatus_PAYMENT_STATUS_DECLINED, "card_declined"
	}
	return &paymentv1.ProcessPaymentResponse{Payment: p}, nil
}

func (n *neighbours) RefundPayment(ctx context.Context, req *paymentv1.RefundPaymentRequest) (*paymentv1.RefundPaymentResponse, error) {
	if err := n.record(ctx, "payment", "RefundPayment", req.GetOrderId(), req.GetReason()); err != nil {
		return nil, err
	}
	return &paymentv1.RefundPaymentResponse{Payment: &paymentv1.Payment{OrderId: req.GetOrderId(), Status: paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED}}, nil
}

func (n *neighbours) ReserveStock(ctx context.Context, req *inventoryv1.ReserveStockRequest) (*inventoryv1.ReserveStockResponse, error) {
	if err := n.record(ctx, "inventory", "ReserveStock", req.GetOrderId(), ""); err != nil {
		return nil, err
	}
	r := &inventoryv1.Reservation{OrderId: req.GetOrderId(), Status: inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED}
	for _, it := range req.GetItems() {
		if it.GetSku() == "SHORT" {
			r.Status, r.RejectReason = inventoryv1.ReservationStatus_RESERVATION_STATUS_REJECTED, "insufficient_stock"
		}
	}
	return &inventoryv1.ReserveStockResponse{Reservation: r}, nil
}

func (n *neighbours) ReleaseStock(ctx context.Context, req *inventoryv1.ReleaseStockRequest) (*inventoryv1.ReleaseStockResponse, error) {
	if err := n.record(ctx, "inventory", "ReleaseStock", req.GetOrderId(), ""); err != nil {
		return nil, err
	}
	return &inventoryv1.ReleaseStockResponse{Reservation: &inventoryv1.Reservation{OrderId: req.GetOrderId(), Status: inventoryv1.ReservationStatus_RESERVATION_STATUS_RELEASED}}, nil
}

func (n *neighbours) ConfirmOrder(ctx context.Context, req *orderv1.ConfirmOrderRequest) (*orderv1.ConfirmOrderResponse, error) {
	if err := n.record(ctx, "order", "ConfirmOrder", req.GetOrderId(), ""); err != nil {
		return nil, err
	}
	return &orderv1.ConfirmOrderResponse{Order: &orderv1.Order{OrderId: req.GetOrderId(), Status: orderv1.OrderStatus_ORDER_STATUS_CONFIRMED}}, nil
}

func (n *neighbours) CancelOrder(ctx context.Context, req *orderv1.CancelOrderRequest) (*orderv1.CancelOrderResponse, error) {
	if err := n.record(ctx, "order", "CancelOrder", req.GetOrderId(), req.GetReason()); err != nil {
		return nil, err
	}
	return &orderv1.CancelOrderResponse{Order: &orderv1.Order{OrderId: req.GetOrderId(), Status: orderv1.OrderStatus_ORDER_STATUS_CANCELLED}}, nil
}

// startNeighbours serves the fakes, each service on its own free port with
// its own certificate of pki, and returns their addresses by service.
func startNeighbours(t *testing.T, pki *authtest.PKI) (*neighbours, map[string]string) {
	t.Helper()
	n := &neighbours{release: make(chan struct{}), assertions: map[string]*token.AssertionVerifier{}}
	addrs := map[string]string{}
	for service, register := range map[string]func(*grpc.Server){
		"payment":   func(s *grpc.Server) { paymentv1.RegisterPaymentServiceServer(s, n) },
		"inventory": func(s *grpc.Server) { inventoryv1.RegisterInventoryServiceServer(s, n) },
		"order":     func(s *grpc.Server) { orderv1.RegisterOrderServiceServer(s, n) },
	} {
		kit := pki.Kit(service)
		n.assertions[service] = kit.Assertions
		lis, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
		require.NoError(t, err)
		s := grpc.NewServer(grpc.Creds(kit.TLS.ServerCredentials()))
		register(s)
		go func() { _ = s.Serve(lis) }()
		t.Cleanup(s.Stop)
		addrs[service] = lis.Addr().String()
	}
	return n, addrs
}

// bundle is a running orchestrator. sagas calls SagaService as an operator
// (every call carries the operator's token); pki, addr and as make other
// callers.
type bundle struct {
	*servicetest.Process
	n      *neighbours
	broker string
	sagas  orchestratorv1.SagaServiceClient
	pki    *authtest.PKI
	addr   string
	logs   *servicetest.Logs
}

// as returns a SagaService client calling as user with roles.
func (b *bundle) as(user string, roles ...string) orchestratorv1.SagaServiceClient {
	return orchestratorv1.NewSagaServiceClient(b.pki.Dial(b.addr, grpc.WithPerRPCCredentials(grpcclient.Bearer(b.pki.Token(user, roles...)))))
}

// poolSizeVar in setup's env sizes the orchestrator's connection pool
// (pool_max_conns of DATABASE_URL).
const poolSizeVar = "TEST_POOL_MAX_CONNS"

// dbAddrVar in setup's env replaces the host and port of DATABASE_URL (a
// proxy in front of PostgreSQL); migrations still connect directly.
const dbAddrVar = "TEST_DATABASE_ADDR"

// setup runs the orchestrator binary's run() on free ports against a fresh
// database, the local Redis, an in-process Kafka (kfake) and fake
// neighbours.
func setup(t *testing.T, env map[string]string) *bundle {
	t.Helper()
	pki := authtest.New(t)
	n, addrs := startNeighbours(t, pki)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, event.TopicOrder))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	dbURL, _ := pgtest.NewDatabase(t, db.Orchestrator)
	prefix := make([]byte, 6)
	_, _ = rand.Read(prefix)
	vars := pki.Env("orchestrator")
	maps.Copy(vars, map[string]string{
		"GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"DATABASE_URL": pgtest.AsRole(dbURL, "goodgo_orchestrator"), "MIGRATE_DATABASE_URL": dbURL,
		"KAFKA_BROKERS": cluster.ListenAddrs()[0], "IDEMPOTENCY_KEY_PREFIX": "orch-test:" + hex.EncodeToString(prefix) + ":",
		"ORDER_ADDR": addrs["order"], "PAYMENT_ADDR": addrs["payment"], "INVENTORY_ADDR": addrs["inventory"],
		"SAGA_POLL_INTERVAL": "100ms", "SAGA_LEASE_TTL": "1s", "OTEL_SDK_DISABLED": "true",
	})
	maps.Copy(vars, env)
	if n, ok := env[poolSizeVar]; ok {
		u, err := url.Parse(vars["DATABASE_URL"])
		require.NoError(t, err)
		q := u.Query()
		q.Set("pool_max_conns", n)
		u.RawQuery = q.Encode()
		vars["DATABASE_URL"] = u.String()
	}
	if addr, ok := env[dbAddrVar]; ok {
		u, err := url.Parse(vars["DATABASE_URL"])
		require.NoError(t, err)
		u.Host = addr
		vars["DATABASE_URL"] = u.String()
	}
	lookup := servicetest.Lookup(vars)
	cfg, err := loadConfig(lookup)
	require.NoError(t, err)
	p := servicetest.Start(t, "orchestrator", func(ctx context.Context, stdout io.Writer) error { return run(ctx, cfg, stdout, lookup) })
	b := &bundle{Process: p, n: n, broker: cluster.ListenAddrs()[0], pki: pki, addr: p.GRPCAddr, logs: p.Logs}
	b.sagas = b.as("ops-1", caller.RoleOperator)
	return b
}

// publish sends an order.created.v1 event as the outbox relay would.
func (b *bundle) publish(t *testing.T, eventID uuid.UUID, m *orderv1.OrderCreated) {
	t.Helper()
	b.publishKeyed(t, m.GetOrderId(), eventID, m)
}

// publishKeyed publishes with Kafka key key (the partition).
func (b *bundle) publishKeyed(t *testing.T, key string, eventID uuid.UUID, m *orderv1.OrderCreated) {
	t.Helper()
	payload, err := proto.Marshal(m)
	require.NoError(t, err)
	w := &kafka.Writer{Addr: kafka.TCP(b.broker), Topic: event.TopicOrder, Balancer: &kafka.Hash{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer func() { _ = w.Close() }()
	require.NoError(t, w.WriteMessages(context.Background(), kafka.Message{
		Key:   []byte(key),
		Value: payload,
		Headers: []kafka.Header{
			{Key: event.HeaderEventID, Value: []byte(eventID.String())},
			{Key: event.HeaderEventType, Value: []byte(event.OrderCreated)},
			{Key: event.HeaderAggregateType, Value: []byte(event.AggregateOrder)},
			{Key: event.HeaderAggregateID, Value: []byte(m.GetOrderId())},
			{Key: event.HeaderAggregateVersion, Value: []byte(strconv.Itoa(1))},
			{Key: event.HeaderOccurredAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
			{Key: event.HeaderContentType, Value: []byte(event.ContentTypeProtobuf)},
			{Key: event.HeaderTraceparent, Value: []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
		},
	}))
}

func order(paymentMethod string, skus ...string) *orderv1.OrderCreated {
	m := &orderv1.OrderCreated{
		OrderId: uuid.NewString(), CustomerId: "c-1", PaymentMethod: paymentMethod, PlacedBy: "alice",
		Total: &commonv1.Money{CurrencyCode: "USD", AmountMinor: 2500},
	}
	for _, s := range skus {
		m.Items = append(m.Items, &commonv1.LineItem{Sku: s, Quantity: 1})
	}
	return m
}

// sagaOf waits for the saga of an order to reach state and returns it.
func (b *bundle) sagaOf(t *testing.T, orderID string, state orchestratorv1.SagaState) *orchestratorv1.Saga {
	t.Helper()
	var found *orchestratorv1.Saga
	require.Eventually(t, func() bool {
		resp, err := b.sagas.ListSagas(context.Background(), &orchestratorv1.ListSagasRequest{PageSize: 100})
		require.NoError(t, err)
		for _, s := range resp.GetSagas() {
			if s.GetCorrelationId() == orderID && s.GetState() == state {
				found = s
				return true
			}
		}
		return false
	}, 20*time.Second, 20*time.Millisecond, "saga of order %s never reached %s", orderID, state)
	return found
}

// runSaga publishes o under a fresh event id and waits until its saga is
// in state.
func (b *bundle) runSaga(t *testing.T, o *orderv1.OrderCreated, state orchestratorv1.SagaState) *orchestratorv1.Saga {
	t.Helper()
	b.publish(t, uuid.New(), o)
	return b.sagaOf(t, o.GetOrderId(), state)
}

// keyed returns a context with a fresh idempotency key.
func keyed() context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), idempotency.MetadataKey, uuid.NewString())
}

func TestOrderSagaConfirmsAPaidReservedOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	o := order("tok_visa", "SKU-1", "SKU-2")
	s := b.runSaga(t, o, orchestratorv1.SagaState_SAGA_STATE_COMPLETED)
	require.Equal(t, []string{"ProcessPayment", "ReserveStock", "ConfirmOrder"}, b.n.methodsOf(o.GetOrderId()))
	for _, c := range b.n.of(o.GetOrderId()) {
		require.Equal(t, "orchestrator", c.Caller, "the orchestrator calls with its certificate")
		require.Equal(t, "alice", c.User, "acting for the user who placed the order (a verified assertion)")
	}
	calls := b.n.of(o.GetOrderId())
	require.Equal(t, "saga:"+s.GetSagaId()+":payment", calls[0].Key)
	require.Equal(t, "saga:"+s.GetSagaId()+":inventory", calls[1].Key)
	require.Equal(t, "saga:"+s.GetSagaId()+":confirm", calls[2].Key)
	require.Equal(t, "order_checkout", s.GetSagaType())
	require.Equal(t, "alice", s.GetStartedBy())

	got, err := b.sagas.GetSaga(context.Background(), &orchestratorv1.GetSagaRequest{SagaId: s.GetSagaId()})
	require.NoError(t, err)
	var steps []string
	for _, st := range got.GetSaga().GetSteps() {
		require.Equal(t, orchestratorv1.StepStatus_STEP_STATUS_SUCCEEDED, st.GetStatus())
		require.Equal(t, orchestratorv1.StepPhase_STEP_PHASE_ACTION, st.GetPhase())
		steps = append(steps, st.GetName())
	}
	require.Equal(t, []string{"order", "payment", "inventory", "confirm"}, steps)
	require.Equal(t, int32(1), got.GetSaga().GetSteps()[1].GetAttempts())

	line := b.logs.Find("order saga started")
	require.NotNil(t, line)
	require.Equal(t, "4bf92f3577b34da6a3ce929d0e0e4736", line["trace_id"], "the saga continues the event's trace")
}

func TestDeclinedPaymentCancelsTheOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	o := order("tok_decline", "SKU-1")
	s := b.runSaga(t, o, orchestratorv1.SagaState_SAGA_STATE_COMPENSATED)
	require.Equal(t, []string{"ProcessPayment", "CancelOrder"}, b.n.methodsOf(o.GetOrderId()),
		"nothing reserved, nothing to refund: only the order is cancelled")
	cancel := b.n.of(o.GetOrderId())[1]
	require.Equal(t, "payment declined (card_declined)", cancel.Reason, "the customer's reason, without internal text")
	require.Equal(t, "saga:"+s.GetSagaId()+":order:compensate", cancel.Key)
	require.Equal(t, "payment: payment declined: card_declined", s.GetFailureReason())
}

func TestInsufficientStockRefundsThenCancels(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	o := order("tok_visa", "SKU-1", "SHORT")
	s := b.runSaga(t, o, orchestratorv1.SagaState_SAGA_STATE_COMPENSATED)
	require.Equal(t, []string{"ProcessPayment", "ReserveStock", "RefundPayment", "CancelOrder"}, b.n.methodsOf(o.GetOrderId()))
	require.Equal(t, "saga:"+s.GetSagaId()+":payment:compensate", b.n.of(o.GetOrderId())[2].Key)
	require.Equal(t, "inventory: insufficient stock: insufficient_stock", s.GetFailureReason())
}

func TestDuplicateEventsStartOneSaga(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	o := order("tok_visa", "SKU-1")
	id := uuid.New()
	b.publish(t, id, o)
	b.publish(t, id, o)         // redelivery
	b.publish(t, uuid.New(), o) // the same order under another event id
	b.sagaOf(t, o.GetOrderId(), orchestratorv1.SagaState_SAGA_STATE_COMPLETED)

	// A later order on the same partition proves the duplicates were consumed.
	later := order("tok_visa", "SKU-1")
	b.publishKeyed(t, o.GetOrderId(), uuid.New(), later)
	b.sagaOf(t, later.GetOrderId(), orchestratorv1.SagaState_SAGA_STATE_COMPLETED)

	require.Equal(t, []string{"ProcessPayment", "ReserveStock", "ConfirmOrder"}, b.n.methodsOf(o.GetOrderId()))
	resp, err := b.sagas.ListSagas(context.Background(), &orchestratorv1.ListSagasRequest{})
	require.NoError(t, err)
	n := 0
	for _, s := range resp.GetSagas() {
		if s.GetCorrelationId() == o.GetOrderId() {
			n++
		}
	}
	require.Equal(t, 1, n)
}

func TestSagaServiceOperatesSagas(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()

	t.Run("abort compensates a running saga", func(t *testing.T) {
		b.n.mu.Lock()
		b.n.blockOn = "ReserveStock"
		b.n.mu.Unlock()
		o := order("tok_visa", "SKU-1")
		s := b.runSaga(t, o, orchestratorv1.SagaState_SAGA_STATE_RUNNING)
		require.Eventually(t, func() bool { return len(b.n.of(o.GetOrderId())) == 2 }, 10*time.Second, 5*time.Millisecond)

		bob := b.as("ops-bob", caller.RoleOperator)
		_, err := bob.AbortSaga(ctx, &orchestratorv1.AbortSagaRequest{SagaId: s.GetSagaId()})
		require.Equal(t, codes.InvalidArgument, status.Code(err), "a mutating RPC needs an idempotency key")
		_, err = b.as("alice").AbortSaga(keyed(), &orchestratorv1.AbortSagaRequest{SagaId: s.GetSagaId()})
		require.Equal(t, codes.PermissionDenied, status.Code(err), "not even the order's customer aborts")
		anonymous := orchestratorv1.NewSagaServiceClient(b.pki.Dial(b.addr))
		_, err = anonymous.AbortSaga(metadata.AppendToOutgoingContext(keyed(), "x-user-id", "ops-bob"), &orchestratorv1.AbortSagaRequest{SagaId: s.GetSagaId()})
		require.Equal(t, codes.Unauthenticated, status.Code(err), "a header names nobody")

		resp, err := bob.AbortSaga(keyed(), &orchestratorv1.AbortSagaRequest{SagaId: s.GetSagaId(), Reason: "customer called"})
		require.NoError(t, err)
		require.Contains(t, []orchestratorv1.SagaState{orchestratorv1.SagaState_SAGA_STATE_COMPENSATING, orchestratorv1.SagaState_SAGA_STATE_COMPENSATED}, resp.GetSaga().GetState())
		b.n.mu.Lock()
		b.n.blockOn = ""
		close(b.n.release)
		b.n.mu.Unlock()
		done := b.sagaOf(t, o.GetOrderId(), orchestratorv1.SagaState_SAGA_STATE_COMPENSATED)
		require.Equal(t, "aborted by operator ops-bob: customer called", done.GetFailureReason())
		methods := b.n.methodsOf(o.GetOrderId())
		require.Equal(t, "CancelOrder", methods[len(methods)-1])
		require.Contains(t, methods, "RefundPayment")
		require.Contains(t, methods, "ReleaseStock", "the in-flight reservation, of unknown outcome, was released")
		reserves := 0
		for _, m := range methods {
			if m == "ReserveStock" {
				reserves++
			}
		}
		require.Equal(t, 1, reserves, "compensation does not call ReserveStock again")

		_, err = bob.AbortSaga(keyed(), &orchestratorv1.AbortSagaRequest{SagaId: s.GetSagaId()})
		require.Equal(t, codes.FailedPrecondition, status.Code(err))
		_, err = bob.RetrySaga(keyed(), &orchestratorv1.RetrySagaRequest{SagaId: s.GetSagaId()})
		require.Equal(t, codes.FailedPrecondition, status.Code(err), "only PARKED sagas are retried")
	})

	t.Run("unknown and malformed ids", func(t *testing.T) {
		_, err := b.sagas.GetSaga(ctx, &orchestratorv1.GetSagaRequest{SagaId: uuid.NewString()})
		require.Equal(t, codes.NotFound, status.Code(err))
		_, err = b.sagas.GetSaga(ctx, &orchestratorv1.GetSagaRequest{SagaId: "nope"})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		_, err = b.sagas.RetrySaga(keyed(), &orchestratorv1.RetrySagaRequest{SagaId: uuid.NewString()})
		require.Equal(t, codes.NotFound, status.Code(err))
	})

	t.Run("list paginates and filters", func(t *testing.T) {
		var ids []string
		for range 3 {
			o := order("tok_visa", "SKU-1")
			b.publish(t, uuid.New(), o)
			ids = append(ids, b.sagaOf(t, o.GetOrderId(), orchestratorv1.SagaState_SAGA_STATE_COMPLETED).GetSagaId())
		}
		var seen []string
		token := ""
		for {
			resp, err := b.sagas.ListSagas(ctx, &orchestratorv1.ListSagasRequest{
				State: orchestratorv1.SagaState_SAGA_STATE_COMPLETED, PageSize: 1, PageToken: token,
			})
			require.NoError(t, err)
			for _, s := range resp.GetSagas() {
				require.Equal(t, orchestratorv1.SagaState_SAGA_STATE_COMPLETED, s.GetState())
				seen = append(seen, s.GetSagaId())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		require.Len(t, seen, 3)
		require.ElementsMatch(t, ids, seen)
		_, err := b.sagas.ListSagas(ctx, &orchestratorv1.ListSagasRequest{PageToken: "garbage"})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		comp, err := b.sagas.ListSagas(ctx, &orchestratorv1.ListSagasRequest{State: orchestratorv1.SagaState_SAGA_STATE_COMPENSATED})
		require.NoError(t, err)
		require.Len(t, comp.GetSagas(), 1)
	})
}

// Customers follow their own sagas and nobody else's; operators see all.
func TestCustomersSeeTheirOwnSagasOnly(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	mine, theirs := order("tok_visa", "SKU-1"), order("tok_visa", "SKU-1")
	theirs.PlacedBy = "bob"
	b.publish(t, uuid.New(), mine)
	b.publish(t, uuid.New(), theirs)
	my := b.sagaOf(t, mine.GetOrderId(), orchestratorv1.SagaState_SAGA_STATE_COMPLETED)
	other := b.sagaOf(t, theirs.GetOrderId(), orchestratorv1.SagaState_SAGA_STATE_COMPLETED)
	alice := b.as("alice")

	list, err := alice.ListSagas(ctx, &orchestratorv1.ListSagasRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetSagas(), 1)
	require.Equal(t, my.GetSagaId(), list.GetSagas()[0].GetSagaId())
	byOrder, err := alice.ListSagas(ctx, &orchestratorv1.ListSagasRequest{CorrelationId: mine.GetOrderId()})
	require.NoError(t, err)
	require.Len(t, byOrder.GetSagas(), 1, "an order's saga is found by the order id")
	none, err := alice.ListSagas(ctx, &orchestratorv1.ListSagasRequest{CorrelationId: theirs.GetOrderId()})
	require.NoError(t, err)
	require.Empty(t, none.GetSagas())
	_, err = alice.ListSagas(ctx, &orchestratorv1.ListSagasRequest{StartedBy: "bob"})
	require.Equal(t, codes.PermissionDenied, status.Code(err))

	_, err = alice.GetSaga(ctx, &orchestratorv1.GetSagaRequest{SagaId: my.GetSagaId()})
	require.NoError(t, err)
	_, err = alice.GetSaga(ctx, &orchestratorv1.GetSagaRequest{SagaId: other.GetSagaId()})
	require.Equal(t, codes.NotFound, status.Code(err), "someone else's saga does not exist for them")

	all, err := b.sagas.ListSagas(ctx, &orchestratorv1.ListSagasRequest{StartedBy: "bob"})
	require.NoError(t, err)
	require.Len(t, all.GetSagas(), 1, "operators filter by user")
	_, err = orchestratorv1.NewSagaServiceClient(b.pki.Dial(b.addr)).ListSagas(ctx, &orchestratorv1.ListSagasRequest{})
	require.Equal(t, codes.Unauthenticated, status.Code(err), "an anonymous caller lists nothing")
}

func TestDeniedUsersOrdersAreCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]string{"SAGA_DENY_USERS": "mallory"})
	o := order("tok_visa", "SKU-1")
	o.PlacedBy = "mallory"
	s := b.runSaga(t, o, orchestratorv1.SagaState_SAGA_STATE_COMPENSATED)
	require.Equal(t, []string{"CancelOrder"}, b.n.methodsOf(o.GetOrderId()), "nothing charged on behalf of a blocked user")
	require.True(t, strings.HasPrefix(s.GetFailureReason(), "payment: permission denied"), s.GetFailureReason())
}

func TestConfigErrorsNameTheVariable(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"GOODGO_MODE": "development", "SAGA_WORKERS": "0", "SAGA_DEADLINE": "0s", "SAGA_LEASE_TTL": "10ms", "SAGA_CONTEXT_KEYS": "k1:short", "SAGA_STEP_BUDGET": "-1s"}
	_, err := loadConfig(func(k string) (string, bool) { v, ok := vars[k]; return v, ok })
	require.Error(t, err)
	for _, name := range []string{"SAGA_WORKERS", "SAGA_DEADLINE", "SAGA_LEASE_TTL", "SAGA_CONTEXT_KEYS", "SAGA_STEP_BUDGET"} {
		require.Contains(t, err.Error(), name+":")
	}
	cfg, err := loadConfig(func(k string) (string, bool) { return "development", k == "GOODGO_MODE" })
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, cfg.Saga.Deadline)
	require.Equal(t, 5*time.Second, cfg.Saga.StepTimeout)
	require.Equal(t, saga.UntilDeadline, cfg.Saga.StepBudget, "a step retries a neighbour's outage until the saga deadline")
	require.Equal(t, 12, cfg.Saga.StepAttempts)
	require.Equal(t, 64, cfg.Saga.Workers)
	require.NotEmpty(t, cfg.Saga.OrchestratorID)
	require.Equal(t, "dev-saga", cfg.ContextKeys.ActiveKeyID())
	require.Equal(t, "dev-pii", cfg.PIIKeys.ActiveKeyID())
}

// A payment captured although ProcessPayment answered Internal (the reply
// failed after the commit) is an unknown outcome, not a refusal: retried
// with the same key, and when the saga turns back, refunded — never
// ignored while the order is cancelled, and never charged again.
func TestPaymentThatAnswersInternalIsRefundedWhenTheSagaTurnsBack(t *testing.T) {
	t.Parallel()
	// Three calls whatever the time, not until the deadline.
	b := setup(t, map[string]string{"SAGA_STEP_ATTEMPTS": "3", "SAGA_STEP_BUDGET": "0s"})
	b.n.failOn("ProcessPayment", func(int) error { return status.Error(codes.Internal, "internal error") })
	o := order("tok_visa", "SKU-1")
	s := b.runSaga(t, o, orchestratorv1.SagaState_SAGA_STATE_COMPENSATED)
	require.Equal(t, []string{"ProcessPayment", "ProcessPayment", "ProcessPayment", "RefundPayment", "CancelOrder"},
		b.n.methodsOf(o.GetOrderId()), "retried within its budget, then refunded and cancelled; no charge during compensation")
	calls := b.n.of(o.GetOrderId())
	for _, c := range calls[:3] {
		require.Equal(t, "saga:"+s.GetSagaId()+":payment", c.Key, "every attempt with the step's key")
	}
	require.Equal(t, "saga:"+s.GetSagaId()+":payment:compensate", calls[3].Key)
	require.Equal(t, "the order could not be completed", calls[4].Reason, "no internal text for the customer")
	require.Contains(t, s.GetFailureReason(), "payment: ProcessPayment: rpc error: code = Internal")
}

// ConfirmOrder, the pivot, confirms and then answers Internal: the saga
// retries it with the same key until it learns the outcome and completes;
// it never releases the stock, refunds the money or cancels the order.
func TestConfirmationThatAnswersInternalIsRetriedNotCompensated(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.n.failOn("ConfirmOrder", func(n int) error {
		if n == 1 {
			return status.Error(codes.Internal, "internal error")
		}
		return nil
	})
	o := order("tok_visa", "SKU-1")
	s := b.runSaga(t, o, orchestratorv1.SagaState_SAGA_STATE_COMPLETED)
	require.Equal(t, []string{"ProcessPayment", "ReserveStock", "ConfirmOrder", "ConfirmOrder"}, b.n.methodsOf(o.GetOrderId()))
	calls := b.n.of(o.GetOrderId())
	require.Equal(t, calls[2].Key, calls[3].Key, "the retry uses the pivot's key")
	require.Equal(t, "saga:"+s.GetSagaId()+":confirm", calls[3].Key)
}

// The order service's documented refusal of the pivot — the order is no
// longer PENDING — means it did nothing: the steps before it are undone.
func TestConfirmationRefusedForACancelledOrderCompensates(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.n.failOn("ConfirmOrder", func(int) error {
		return status.Error(codes.FailedPrecondition, "order_id: order is CANCELLED and cannot be confirmed")
	})
	o := order("tok_visa", "SKU-1")
	s := b.runSaga(t, o, orchestratorv1.SagaState_SAGA_STATE_COMPENSATED)
	require.Equal(t, []string{"ProcessPayment", "ReserveStock", "ConfirmOrder", "ReleaseStock", "RefundPayment", "CancelOrder"},
		b.n.methodsOf(o.GetOrderId()), "refused once, not retried; the earlier steps undone in reverse")
	require.Contains(t, s.GetFailureReason(), "confirm: ConfirmOrder: rpc error: code = FailedPrecondition")
}

// With as many busy partitions as pool connections (here one connection,
// three partitions), every connection was held by an inbox transaction
// whose handler waited in Engine.Start for the saga's insert on a second
// connection: consumption stalled for ever (issue 10). The saga is now
// created inside the inbox's transaction and executed after its commit, so
// no handler waits for a connection its own transaction starves.
func TestOneConnectionPoolStillStartsSagas(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]string{poolSizeVar: "1", "SAGA_WORKERS": "2"})
	var orders []*orderv1.OrderCreated
	for range 6 { // six keys over three partitions
		o := order("tok_visa", "SKU-1")
		orders = append(orders, o)
		b.publish(t, uuid.New(), o)
	}
	for _, o := range orders {
		b.sagaOf(t, o.GetOrderId(), orchestratorv1.SagaState_SAGA_STATE_COMPLETED)
		require.Equal(t, []string{"ProcessPayment", "ReserveStock", "ConfirmOrder"}, b.n.methodsOf(o.GetOrderId()))
	}
}
