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

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/optlock"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
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
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Server{app: a, tokens: tokens, logger: logger}
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
func IdempotencyPolicies() map[string]idempotency.Policy {
	return map[string]idempotency.Policy{
		orderv1.OrderService_PlaceOrder_FullMethodName:            {RedisDownSafe: true},
		orderv1.OrderService_ConfirmOrder_FullMethodName:          {RedisDownSafe: true},
		orderv1.OrderService_CancelOrder_FullMethodName:           {RedisDownSafe: true},
		orderv1.OrderService_UpdateShippingAddress_FullMethodName: {RedisDownSafe: false},
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
		PlacedBy: caller.ID(ctx),
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

// GetOrder implements orderv1.OrderServiceServer. Only the caller who
// placed the order and admin callers see it; anyone else gets NotFound.
func (s *Server) GetOrder(ctx context.Context, req *orderv1.GetOrderRequest) (*orderv1.GetOrderResponse, error) {
	o, err := s.app.GetOrder(ctx, caller.ID(ctx), req.GetOrderId())
	if err != nil {
		return nil, s.toStatus(ctx, "GetOrder", err)
	}
	return &orderv1.GetOrderResponse{Order: s.orderToProto(o)}, nil
}

// UpdateShippingAddress implements orderv1.OrderServiceServer. The version
// token is verified before anything is read: a forged token (or one issued
// for another order) and a stale one are both Aborted, naming
// version_token, so the client reads again.
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
		return nil, status.Error(codes.Aborted, "version_token: invalid; read the order again")
	}
	o, err := s.app.UpdateShippingAddress(ctx, app.UpdateShippingAddress{
		Caller:  caller.ID(ctx),
		OrderID: id,
		Address: addressFromProto(req.GetShippingAddress()),
		Version: version,
	})
	if errors.Is(err, optlock.ErrConflict) {
		return nil, status.Error(codes.Aborted, "version_token: stale; the order has changed, read it again")
	}
	if err != nil {
		return nil, s.toStatus(ctx, "UpdateShippingAddress", err)
	}
	return &orderv1.UpdateShippingAddressResponse{Order: s.orderToProto(o)}, nil
}

// ConfirmOrder implements orderv1.OrderServiceServer; admin callers only.
func (s *Server) ConfirmOrder(ctx context.Context, req *orderv1.ConfirmOrderRequest) (*orderv1.ConfirmOrderResponse, error) {
	o, err := s.app.ConfirmOrder(ctx, caller.ID(ctx), req.GetOrderId())
	if err != nil {
		return nil, s.toStatus(ctx, "ConfirmOrder", err)
	}
	return &orderv1.ConfirmOrderResponse{Order: s.orderToProto(o)}, nil
}

// CancelOrder implements orderv1.OrderServiceServer; admin callers only.
func (s *Server) CancelOrder(ctx context.Context, req *orderv1.CancelOrderRequest) (*orderv1.CancelOrderResponse, error) {
	o, err := s.app.CancelOrder(ctx, caller.ID(ctx), req.GetOrderId(), req.GetReason())
	if err != nil {
		return nil, s.toStatus(ctx, "CancelOrder", err)
	}
	return &orderv1.CancelOrderResponse{Order: s.orderToProto(o)}, nil
}
