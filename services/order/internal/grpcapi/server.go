// Package grpcapi implements the OrderService gRPC API over the use cases of
// package app: it converts between protobuf and the domain, signs and
// verifies version tokens, and maps errors to status codes in one place
// (errors.go), never sending internal error text to clients.
package grpcapi

import (
	"context"
	"encoding/hex"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/ratelimit"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	sessionv1 "github.com/goodgo/goodgo/proto/goodgo/session/v1"
	"github.com/goodgo/goodgo/services/order/internal/app"
	"github.com/goodgo/goodgo/services/order/internal/order"
)

// Server implements orderv1.OrderServiceServer. It is safe for concurrent
// use.
type Server struct {
	orderv1.UnimplementedOrderServiceServer

	app    *app.App
	tokens *optlock.Signer
	logger *slog.Logger
}

var _ orderv1.OrderServiceServer = (*Server)(nil)

// New returns a Server running the use cases of a, signing version tokens
// with tokens and logging internal errors to logger (nil discards them).
func New(a *app.App, tokens *optlock.Signer, logger *slog.Logger) *Server {
	return &Server{app: a, tokens: tokens, logger: logs.OrDiscard(logger)}
}

// PermPlaceOrder is the permission of a service acting for a user in the
// order saga: what the user's placing an order lets the saga do for them.
const PermPlaceOrder = "orders.place"

// Policies say who may call each RPC of the service (platform/authz).
// Ownership of a particular order is App's check.
func Policies() authz.Policies {
	saga := authz.Policy{Services: []string{"orchestrator"}, OnBehalfOf: PermPlaceOrder}
	return authz.Policies{
		orderv1.OrderService_PlaceOrder_FullMethodName:            {Users: true, OwnerField: "customer_id", Limit: ratelimit.Write},
		orderv1.OrderService_GetOrder_FullMethodName:              {Users: true, Limit: ratelimit.Read},
		orderv1.OrderService_UpdateShippingAddress_FullMethodName: {Users: true, Limit: ratelimit.Update},
		orderv1.OrderService_ConfirmOrder_FullMethodName:          saga,
		orderv1.OrderService_CancelOrder_FullMethodName:           saga,
		// The reconciler lists everyone's stale orders: the orchestrator
		// itself, acting for nobody.
		orderv1.OrderService_ListStalePendingOrders_FullMethodName: {Services: []string{"orchestrator"}},
		sessionv1.SessionService_Logout_FullMethodName:             {Users: true, Limit: ratelimit.Write},
		// The read side: whose orders a caller sees is QueryServer's check
		// (the customer's own, or any for operators).
		orderv1.OrderQueryService_GetOrderView_FullMethodName: {Users: true, Limit: ratelimit.Read},
		orderv1.OrderQueryService_ListOrders_FullMethodName:   {Users: true, Limit: ratelimit.Read},
	}
}

// IdempotencyPolicies is the idempotency policy of every mutating RPC of the
// service, for idempotency.New. RedisDownSafe says whether the RPC may run
// unguarded when Redis is unavailable:
//
//   - PlaceOrder: safe. orders.idempotency_key is unique, so a retry that
//     Redis did not catch returns the order the first attempt created.
//   - ConfirmOrder, CancelOrder: safe. Repeating a transition is a no-op
//     success that writes nothing, so a duplicate changes nothing.
//   - UpdateShippingAddress: not safe. A retry of a call that succeeded
//     would present a token the success made stale and be answered with a
//     spurious conflict; Unavailable tells the client to retry with the same
//     key once Redis is back, when it gets the replay.
//
// PlaceOrder and UpdateShippingAddress are Sensitive: their stored replies
// hold the shipping address, so a user's keys of them are forgotten when
// the user logs out (SessionService.Logout).
func IdempotencyPolicies() map[string]idempotency.Policy {
	return map[string]idempotency.Policy{
		orderv1.OrderService_PlaceOrder_FullMethodName:            {RedisDownSafe: true, Sensitive: true},
		orderv1.OrderService_ConfirmOrder_FullMethodName:          {RedisDownSafe: true},
		orderv1.OrderService_CancelOrder_FullMethodName:           {RedisDownSafe: true},
		orderv1.OrderService_UpdateShippingAddress_FullMethodName: {RedisDownSafe: false, Sensitive: true},
	}
}

// PlaceOrder implements orderv1.OrderServiceServer.
func (s *Server) PlaceOrder(ctx context.Context, req *orderv1.PlaceOrderRequest) (*orderv1.PlaceOrderResponse, error) {
	items := make([]order.Item, len(req.GetItems()))
	for i, it := range req.GetItems() {
		items[i] = order.Item{SKU: it.GetSku(), Quantity: it.GetQuantity()}
	}
	cmd := app.PlaceOrder{
		Draft: order.Draft{
			CustomerID:      req.GetCustomerId(),
			Items:           items,
			ShippingAddress: addressFromProto(req.GetShippingAddress()),
			PaymentMethod:   req.GetPaymentMethod(),
		},
		PlacedBy: caller.From(ctx).EndUser(),
	}
	// The interceptor's hashed key (hex SHA-256) is stored as its 32 bytes.
	if k, ok := idempotency.KeyFromContext(ctx); ok {
		key, err := hex.DecodeString(k)
		if err != nil {
			return nil, s.toStatus(ctx, "PlaceOrder", err)
		}
		cmd.IdempotencyKey = key
	}
	o, err := s.app.PlaceOrder(ctx, cmd)
	if err != nil {
		return nil, s.toStatus(ctx, "PlaceOrder", err)
	}
	return &orderv1.PlaceOrderResponse{Order: s.orderToProto(o)}, nil
}

// GetOrder implements orderv1.OrderServiceServer. Only the user who placed
// the order and operators see it; anyone else gets NotFound.
func (s *Server) GetOrder(ctx context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	o, err := s.app.GetOrder(ctx, caller.From(ctx), req.GetOrderId())
	if err != nil {
		return nil, s.toStatus(ctx, "GetOrder", err)
	}
	return &orderv1.GetOrderResponse{Order: s.orderToProto(o)}, nil
}

// UpdateShippingAddress implements orderv1.OrderServiceServer. The version
// token is verified before anything is read: a forged token (or one issued
// for another order) and a stale one are both Aborted, naming
// version_token, so the client reads again; something that is not a token
// at all is InvalidArgument. Every refused token is logged for security
// monitoring.
func (s *Server) UpdateShippingAddress(ctx context.Context, req *orderv1.UpdateShippingAddressRequest) (*orderv1.UpdateShippingAddressResponse, error) {
	id := order.NormalizeID(req.GetOrderId())
	if err := order.ValidateID("order_id", id); err != nil {
		return nil, s.toStatus(ctx, "UpdateShippingAddress", err)
	}
	if req.GetVersionToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "version_token: required; read the order first")
	}
	version, err := s.tokens.Verify(event.AggregateOrder, id, req.GetVersionToken())
	if err != nil {
		optlock.LogRefusal(ctx, s.logger, event.AggregateOrder, id, err)
		if errors.Is(err, optlock.ErrMalformedToken) {
			return nil, status.Error(codes.InvalidArgument, "version_token: not a version token; use the one GetOrder returned")
		}
		return nil, status.Error(codes.Aborted, "version_token: invalid; read the order again")
	}
	o, err := s.app.UpdateShippingAddress(ctx, app.UpdateShippingAddress{
		Caller:  caller.From(ctx),
		OrderID: id,
		Address: addressFromProto(req.GetShippingAddress()),
		Version: version,
	})
	if errors.Is(err, optlock.ErrConflict) {
		optlock.LogRefusal(ctx, s.logger, event.AggregateOrder, id, err)
		return nil, status.Error(codes.Aborted, "version_token: stale; the order has changed, read it again")
	}
	if err != nil {
		return nil, s.toStatus(ctx, "UpdateShippingAddress", err)
	}
	return &orderv1.UpdateShippingAddressResponse{Order: s.orderToProto(o)}, nil
}

// ConfirmOrder implements orderv1.OrderServiceServer: the saga acting for
// the order's placer.
func (s *Server) ConfirmOrder(ctx context.Context, req *orderv1.ConfirmOrderRequest) (*orderv1.ConfirmOrderResponse, error) {
	o, err := s.app.ConfirmOrder(ctx, caller.From(ctx), req.GetOrderId())
	if err != nil {
		return nil, s.toStatus(ctx, "ConfirmOrder", err)
	}
	return &orderv1.ConfirmOrderResponse{Order: s.orderToProto(o)}, nil
}

// CancelOrder implements orderv1.OrderServiceServer: the saga acting for
// the order's placer.
func (s *Server) CancelOrder(ctx context.Context, req *orderv1.CancelOrderRequest) (*orderv1.CancelOrderResponse, error) {
	o, err := s.app.CancelOrder(ctx, caller.From(ctx), req.GetOrderId(), req.GetReason())
	if err != nil {
		return nil, s.toStatus(ctx, "CancelOrder", err)
	}
	return &orderv1.CancelOrderResponse{Order: s.orderToProto(o)}, nil
}
