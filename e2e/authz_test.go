package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/idempotency"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	opsv1 "github.com/goodgo/goodgo/proto/goodgo/ops/v1"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
	sessionv1 "github.com/goodgo/goodgo/proto/goodgo/session/v1"
)

// The callers of the authorization matrix.
const (
	byNone     = "no credentials"
	byCustomer = "customer"       // the user who placed the order
	byOther    = "other customer" // another user
	bySaga     = "orchestrator"   // the orchestrator's certificate, acting for the customer
	byRelay    = "relay"          // the outbox relay's certificate
	byOperator = "operator"
	byAdmin    = "admin"
	byExpired  = "expired token"
	byForged   = "forged token"        // signed by another issuer's key
	byForeign  = "foreign certificate" // an orchestrator certificate from another CA
)

var matrixCallers = []string{byNone, byCustomer, byOther, bySaga, byRelay, byOperator, byAdmin, byExpired, byForged, byForeign}

// Outcomes: U Unauthenticated, P PermissionDenied, N NotFound (someone
// else's resource does not exist for them), ok: not refused (the call ran;
// its business answer does not matter here).
const (
	U  = "U"
	P  = "P"
	N  = "N"
	ok = "ok"
)

// TestAuthorizationMatrix calls every RPC of every service as every kind of
// caller, over the real binaries, and checks the answer: refused callers
// get Unauthenticated or PermissionDenied (or NotFound for what is not
// theirs) and change nothing — no row in any database, no idempotency key
// in Redis; allowed callers are not refused.
func TestAuthorizationMatrix(t *testing.T) {
	e := NewEnv(t, envOptions{race: true})
	placed := e.MustPlaceOrder(t, items("SKU-MOUSE", 1), cardOK)
	require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, e.WaitOrder(t, placed.GetOrderId(), 60*time.Second).GetStatus())
	orderID, customer := placed.GetOrderId(), placed.GetCustomerId()
	// The saga records COMPLETED just after the order is confirmed: wait
	// for it, so that nothing changes under the snapshots below.
	var sagaID string
	require.True(t, poll(30*time.Second, 20*time.Millisecond, func() bool {
		sagas, err := e.Sagas.ListSagas(context.Background(), &orchestratorv1.ListSagasRequest{CorrelationId: orderID})
		if err != nil || len(sagas.GetSagas()) != 1 || sagas.GetSagas()[0].GetState() != orchestratorv1.SagaState_SAGA_STATE_COMPLETED {
			return false
		}
		sagaID = sagas.GetSagas()[0].GetSagaId()
		return true
	}), "the order's saga did not complete")

	foreign := authtest.New(t)
	other := uuid.NewString()
	expired, err := e.PKI.Issuer.Mint(customer, nil, -time.Hour)
	require.NoError(t, err)
	forged, err := foreign.Issuer.Mint(customer, []string{caller.RoleAdmin}, time.Hour)
	require.NoError(t, err)
	tokens := map[string]string{
		byCustomer: e.tokenOf(customer), byOther: e.PKI.Token(other), byOperator: e.operator, byAdmin: e.admin,
		byExpired: expired, byForged: forged,
	}

	// conns[caller][service]: users over TLS without a certificate, the
	// services with theirs, the foreign caller with a certificate our CA did
	// not sign.
	conns := map[string]map[string]*grpc.ClientConn{}
	for _, who := range matrixCallers {
		conns[who] = map[string]*grpc.ClientConn{}
		for _, svc := range []string{svcOrder, svcPayment, svcInventory, svcOrchestrator, svcRelay} {
			switch who {
			case bySaga:
				conns[who][svc] = e.PKI.DialAs(svcOrchestrator, svc, e.Addr(svc))
			case byRelay:
				conns[who][svc] = e.PKI.DialAs(svcRelay, svc, e.Addr(svc))
			case byForeign:
				conns[who][svc] = dialForeign(t, e, foreign, svc)
			default:
				conns[who][svc] = e.PKI.Dial(e.Addr(svc))
			}
		}
	}
	// ctx is a call's context for who: token, the saga's user, a fresh
	// idempotency key.
	ctx := func(who string) context.Context {
		c := context.Background()
		if tok, ok := tokens[who]; ok {
			c = authtest.AsUser(c, tok)
		}
		if who == bySaga {
			c = caller.WithDelegation(c, caller.Delegation{User: customer, Permissions: []string{"orders.place"}})
		}
		return metadata.AppendToOutgoingContext(c, idempotency.MetadataKey, uuid.NewString())
	}
	stock, err := e.Inventory.GetStock(context.Background(), &inventoryv1.GetStockRequest{Sku: "SKU-MOUSE"})
	require.NoError(t, err)
	read, err := e.Orders.GetOrder(authtest.AsUser(context.Background(), e.operator), &orderv1.GetOrderRequest{OrderId: orderID})
	require.NoError(t, err)

	type rpc struct {
		name   string
		svc    string
		call   func(ctx context.Context, cc *grpc.ClientConn) error
		expect map[string]string // by caller; absent callers: U for the invalid credentials
	}
	address := &orderv1.Address{Name: "Ada", Line1: "1 Main St", City: "London", PostalCode: "N1", CountryCode: "GB"}
	usersOnly := func(other string) map[string]string {
		return map[string]string{byCustomer: ok, byOther: other, bySaga: P, byRelay: P, byOperator: ok, byAdmin: ok}
	}
	sagaOnly := map[string]string{byCustomer: P, byOther: P, bySaga: ok, byRelay: P, byOperator: P, byAdmin: P}
	operatorsOnly := map[string]string{byCustomer: P, byOther: P, bySaga: P, byRelay: P, byOperator: ok, byAdmin: ok}
	rpcs := []rpc{
		{"OrderService/PlaceOrder", svcOrder, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := orderv1.NewOrderServiceClient(cc).PlaceOrder(c, &orderv1.PlaceOrderRequest{
				CustomerId: customer, Items: items("SKU-MOUSE", 1), ShippingAddress: address, PaymentMethod: cardOK})
			return err
		}, map[string]string{byCustomer: ok, byOther: P, bySaga: P, byRelay: P, byOperator: P, byAdmin: P}},
		{"OrderService/GetOrder", svcOrder, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := orderv1.NewOrderServiceClient(cc).GetOrder(c, &orderv1.GetOrderRequest{OrderId: orderID})
			return err
		}, usersOnly(N)},
		{"OrderService/UpdateShippingAddress", svcOrder, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := orderv1.NewOrderServiceClient(cc).UpdateShippingAddress(c, &orderv1.UpdateShippingAddressRequest{
				OrderId: orderID, ShippingAddress: address, VersionToken: read.GetOrder().GetVersionToken()})
			return err
		}, usersOnly(N)},
		{"OrderService/ConfirmOrder", svcOrder, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := orderv1.NewOrderServiceClient(cc).ConfirmOrder(c, &orderv1.ConfirmOrderRequest{OrderId: orderID})
			return err
		}, sagaOnly},
		{"OrderService/CancelOrder", svcOrder, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := orderv1.NewOrderServiceClient(cc).CancelOrder(c, &orderv1.CancelOrderRequest{OrderId: orderID, Reason: "matrix"})
			return err
		}, sagaOnly},
		{"OrderService/ListStalePendingOrders", svcOrder, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := orderv1.NewOrderServiceClient(cc).ListStalePendingOrders(c, &orderv1.ListStalePendingOrdersRequest{OlderThan: durationpb.New(time.Minute)})
			return err
		}, sagaOnly}, // the orchestrator's reconciler, with or without a user to act for
		{"SessionService/Logout", svcOrder, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := sessionv1.NewSessionServiceClient(cc).Logout(c, &sessionv1.LogoutRequest{})
			return err
		}, usersOnly(ok)},
		{"PaymentService/ProcessPayment", svcPayment, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := paymentv1.NewPaymentServiceClient(cc).ProcessPayment(c, &paymentv1.ProcessPaymentRequest{
				OrderId: uuid.NewString(), Amount: &commonv1.Money{CurrencyCode: "USD", AmountMinor: 100}, PaymentMethod: cardOK})
			return err
		}, sagaOnly},
		{"PaymentService/RefundPayment", svcPayment, func(c context.Context, cc *grpc.ClientConn) error {
			// A fresh order for the allowed caller, whose refund voids it;
			// the refused callers aim at the confirmed order's payment.
			id := orderID
			if d, ok := caller.DelegationFrom(c); ok && d.User != "" {
				id = uuid.NewString()
			}
			_, err := paymentv1.NewPaymentServiceClient(cc).RefundPayment(c, &paymentv1.RefundPaymentRequest{OrderId: id})
			return err
		}, sagaOnly},
		{"PaymentService/GetPayment", svcPayment, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := paymentv1.NewPaymentServiceClient(cc).GetPayment(c, &paymentv1.GetPaymentRequest{OrderId: orderID})
			return err
		}, map[string]string{byCustomer: ok, byOther: N, bySaga: ok, byRelay: P, byOperator: ok, byAdmin: ok}},
		{"InventoryService/GetProducts", svcInventory, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := inventoryv1.NewInventoryServiceClient(cc).GetProducts(c, &inventoryv1.GetProductsRequest{})
			return err
		}, map[string]string{byCustomer: ok, byOther: ok, bySaga: ok, byRelay: P, byOperator: ok, byAdmin: ok}},
		{"InventoryService/GetStock", svcInventory, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := inventoryv1.NewInventoryServiceClient(cc).GetStock(c, &inventoryv1.GetStockRequest{Sku: "SKU-MOUSE"})
			return err
		}, map[string]string{byCustomer: ok, byOther: ok, bySaga: ok, byRelay: P, byOperator: ok, byAdmin: ok}},
		{"InventoryService/ReserveStock", svcInventory, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := inventoryv1.NewInventoryServiceClient(cc).ReserveStock(c, &inventoryv1.ReserveStockRequest{
				OrderId: uuid.NewString(), Items: []*inventoryv1.ReservationItem{{Sku: "SKU-MOUSE", Quantity: 1}}})
			return err
		}, sagaOnly},
		{"InventoryService/ReleaseStock", svcInventory, func(c context.Context, cc *grpc.ClientConn) error {
			id := orderID
			if d, ok := caller.DelegationFrom(c); ok && d.User != "" {
				id = uuid.NewString()
			}
			_, err := inventoryv1.NewInventoryServiceClient(cc).ReleaseStock(c, &inventoryv1.ReleaseStockRequest{OrderId: id})
			return err
		}, sagaOnly},
		{"InventoryService/AdjustStock", svcInventory, func(c context.Context, cc *grpc.ClientConn) error {
			// The token read before the matrix: stale for whoever gets past
			// the policy, so no stock moves.
			_, err := inventoryv1.NewInventoryServiceClient(cc).AdjustStock(c, &inventoryv1.AdjustStockRequest{
				Sku: "SKU-MOUSE", Available: 1, VersionToken: stock.GetProduct().GetVersionToken()})
			return err
		}, map[string]string{byCustomer: P, byOther: P, bySaga: P, byRelay: P, byOperator: P, byAdmin: ok}},
		{"InventoryService/GetReservation", svcInventory, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := inventoryv1.NewInventoryServiceClient(cc).GetReservation(c, &inventoryv1.GetReservationRequest{OrderId: orderID})
			return err
		}, operatorsOnly},
		{"SagaService/GetSaga", svcOrchestrator, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := orchestratorv1.NewSagaServiceClient(cc).GetSaga(c, &orchestratorv1.GetSagaRequest{SagaId: sagaID})
			return err
		}, usersOnly(N)},
		{"SagaService/ListSagas", svcOrchestrator, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := orchestratorv1.NewSagaServiceClient(cc).ListSagas(c, &orchestratorv1.ListSagasRequest{})
			return err
		}, usersOnly(ok)},
		{"SagaService/RetrySaga", svcOrchestrator, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := orchestratorv1.NewSagaServiceClient(cc).RetrySaga(c, &orchestratorv1.RetrySagaRequest{SagaId: sagaID})
			return err
		}, operatorsOnly},
		{"SagaService/AbortSaga", svcOrchestrator, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := orchestratorv1.NewSagaServiceClient(cc).AbortSaga(c, &orchestratorv1.AbortSagaRequest{SagaId: sagaID})
			return err
		}, operatorsOnly},
	}
	// ParkedEventService, served by the orchestrator (its inbox) and the
	// relay (the outbox rows): operators only. The allowed calls name an
	// event nobody parked (NotFound) and change nothing.
	for _, svc := range []string{svcOrchestrator, svcRelay} {
		rpcs = append(rpcs,
			rpc{"ParkedEventService/ListParkedEvents@" + svc, svc, func(c context.Context, cc *grpc.ClientConn) error {
				_, err := opsv1.NewParkedEventServiceClient(cc).ListParkedEvents(c, &opsv1.ListParkedEventsRequest{IncludeResolved: true})
				return err
			}, operatorsOnly},
			rpc{"ParkedEventService/ReplayParkedEvent@" + svc, svc, func(c context.Context, cc *grpc.ClientConn) error {
				_, err := opsv1.NewParkedEventServiceClient(cc).ReplayParkedEvent(c, &opsv1.ReplayParkedEventRequest{EventId: uuid.NewString()})
				return err
			}, operatorsOnly},
			rpc{"ParkedEventService/DiscardParkedEvent@" + svc, svc, func(c context.Context, cc *grpc.ClientConn) error {
				_, err := opsv1.NewParkedEventServiceClient(cc).DiscardParkedEvent(c, &opsv1.DiscardParkedEventRequest{
					EventId: uuid.NewString(), Reason: "matrix"})
				return err
			}, operatorsOnly},
		)
	}
	for _, svc := range []string{svcOrder, svcPayment, svcInventory, svcOrchestrator, svcRelay} {
		all := map[string]string{}
		for _, who := range matrixCallers {
			all[who] = ok
		}
		rpcs = append(rpcs, rpc{"Health/Check@" + svc, svc, func(c context.Context, cc *grpc.ClientConn) error {
			_, err := healthpb.NewHealthClient(cc).Check(c, &healthpb.HealthCheckRequest{})
			return err
		}, all})
	}

	expected := func(r rpc, who string) string {
		if want, ok := r.expect[who]; ok {
			return want
		}
		return U // no, expired, forged credentials, a foreign certificate
	}
	codeOf := map[string]codes.Code{U: codes.Unauthenticated, P: codes.PermissionDenied, N: codes.NotFound}
	call := func(t *testing.T, r rpc, who string) error {
		c, cancel := context.WithTimeout(ctx(who), 20*time.Second)
		defer cancel()
		return r.call(c, conns[who][r.svc])
	}

	// First every refusal, against a snapshot of everything stored.
	before := e.snapshot(t)
	for _, r := range rpcs {
		for _, who := range matrixCallers {
			want := expected(r, who)
			if want == ok {
				continue
			}
			t.Run(r.name+"/"+who, func(t *testing.T) {
				err := call(t, r, who)
				st := status.Convert(err)
				require.Equal(t, codeOf[want], st.Code(), "%s as %s: %v", r.name, who, err)
				require.NotContains(t, strings.ToLower(st.Message()), "internal", "a refusal says what is missing, not internal text")
			})
		}
	}
	require.Equal(t, before, e.snapshot(t), "a refused call changed stored state")

	// Then every allowed caller gets through.
	for _, r := range rpcs {
		for _, who := range matrixCallers {
			if expected(r, who) != ok {
				continue
			}
			t.Run(r.name+"/"+who+" is allowed", func(t *testing.T) {
				code := status.Code(call(t, r, who))
				require.NotContains(t, []codes.Code{codes.Unauthenticated, codes.PermissionDenied, codes.Internal}, code,
					"%s as %s", r.name, who)
			})
		}
	}
}

// tokenOf returns the token of the environment's shopper id.
func (e *Env) tokenOf(id string) string {
	for _, s := range e.shoppers {
		if s.id == id {
			return s.token
		}
	}
	e.tb.Fatalf("no shopper %s", id)
	return ""
}

// dialForeign connects to svc trusting our CA for the server, but
// presenting the orchestrator certificate of another CA.
func dialForeign(t *testing.T, e *Env, foreign *authtest.PKI, svc string) *grpc.ClientConn {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(foreign.Paths.Cert(svcOrchestrator), foreign.Paths.Key(svcOrchestrator))
	require.NoError(t, err)
	pem, err := os.ReadFile(e.PKI.Paths.CA())
	require.NoError(t, err)
	roots := x509.NewCertPool()
	require.True(t, roots.AppendCertsFromPEM(pem))
	creds := credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, Certificates: []tls.Certificate{cert}})
	conn, err := grpc.NewClient(e.Addr(svc), grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// snapshot fingerprints what the services store: every business table and
// outbox of their databases (not lease and offset bookkeeping, which
// changes on its own) and the environment's idempotency records in Redis
// (not the per-user sets that index sensitive keys for logout: a guarded
// call refused by its handler, as NotFound, may leave an entry pointing at
// nothing).
func (e *Env) snapshot(t *testing.T) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]string{}
	tables := map[string][]string{
		svcOrder:        {"orders", "order_items", "outbox"},
		svcPayment:      {"payments", "outbox"},
		svcInventory:    {"products", "reservations", "reservation_items", "outbox"},
		svcOrchestrator: {"sagas", "saga_steps", "saga_audit"},
	}
	for svc, names := range tables {
		for _, table := range names {
			// The outbox's publication marks are the relay's, not a caller's.
			row := "t::text"
			if table == "outbox" {
				row = "t.id::text || t.event_type"
			}
			var sum string
			q := fmt.Sprintf(`SELECT coalesce(md5(string_agg(%s, '|' ORDER BY %s)), '') FROM %s t`, row, row, table)
			require.NoError(t, e.DB[svc].QueryRow(ctx, q).Scan(&sum), "%s.%s", svc, table)
			out[svc+"."+table] = sum
		}
	}
	opt, err := redis.ParseURL(e.redisURL)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	keys, err := rdb.Keys(ctx, e.idemPrefix+"*").Result()
	require.NoError(t, err)
	records := 0
	for _, k := range keys {
		// <prefix><service>:track:… are the per-user sets of tracked keys.
		if !strings.Contains(strings.TrimPrefix(k, e.idemPrefix), ":track:") {
			records++
		}
	}
	out["redis records"] = fmt.Sprint(records)
	return out
}
