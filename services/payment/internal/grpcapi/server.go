// Package grpcapi implements goodgo.payment.v1.PaymentService over the app
// use cases: it turns requests into validated domain values, responses into
// protos with signed version tokens, and errors into gRPC status codes in
// one place (toStatus), never sending internal text to clients.
package grpcapi

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/payment/internal/app"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
)

// Server implements paymentv1.PaymentServiceServer. Idempotency keys,
// caller identity, metrics and tracing are handled by the interceptors the
// server is registered behind (platform/grpcserver, platform/idempotency).
type Server struct {
	paymentv1.UnimplementedPaymentServiceServer
	svc    *app.Service
	signer *optlock.Signer
	logger *slog.Logger
}

var _ paymentv1.PaymentServiceServer = (*Server)(nil)

// New returns a Server running svc, signing version tokens with signer and
// logging internal errors to logger.
func New(svc *app.Service, signer *optlock.Signer, logger *slog.Logger) *Server {
	return &Server{svc: svc, signer: signer, logger: logger}
}

// ProcessPayment implements paymentv1.PaymentServiceServer.
func (s *Server) ProcessPayment(ctx context.Context, req *paymentv1.ProcessPaymentRequest) (*paymentv1.ProcessPaymentResponse, error) {
	var amount *payment.Money
	if a := req.GetAmount(); a != nil {
		amount = &payment.Money{Currency: a.GetCurrencyCode(), Minor: a.GetAmountMinor()}
	}
	charge, err := payment.NewCharge(req.GetOrderId(), amount, req.GetPaymentMethod())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	// The policy admits only the orchestrator acting for a user: the user
	// its verified assertion names is the customer charged.
	charge.CustomerID = caller.From(ctx).User
	p, err := s.svc.ProcessPayment(ctx, charge)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &paymentv1.ProcessPaymentResponse{Payment: s.toProto(p)}, nil
}

// RefundPayment implements paymentv1.PaymentServiceServer.
func (s *Server) RefundPayment(ctx context.Context, req *paymentv1.RefundPaymentRequest) (*paymentv1.RefundPaymentResponse, error) {
	ref, err := payment.NewRef(req.GetPaymentId(), req.GetOrderId())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if err := payment.ValidateRefundReason(req.GetReason()); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	p, err := s.svc.RefundPayment(ctx, ref, req.GetReason(), caller.From(ctx).User)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &paymentv1.RefundPaymentResponse{Payment: s.toProto(p)}, nil
}

// GetPayment implements paymentv1.PaymentServiceServer: a user sees only
// their own payments (others are NotFound), operators and the orchestrator
// all.
func (s *Server) GetPayment(ctx context.Context, req *paymentv1.GetPaymentRequest) (*paymentv1.GetPaymentResponse, error) {
	ref, err := payment.NewRef(req.GetPaymentId(), req.GetOrderId())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	p, err := s.svc.GetPayment(ctx, caller.From(ctx), ref)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &paymentv1.GetPaymentResponse{Payment: s.toProto(p)}, nil
}

var statusToProto = map[payment.Status]paymentv1.PaymentStatus{
	payment.StatusCaptured: paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED,
	payment.StatusDeclined: paymentv1.PaymentStatus_PAYMENT_STATUS_DECLINED,
	payment.StatusRefunded: paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED,
	payment.StatusVoided:   paymentv1.PaymentStatus_PAYMENT_STATUS_VOIDED,
}

// toProto converts a payment for a response. A VOIDED payment has neither
// amount nor refunded amount: nothing was ever asked or charged.
func (s *Server) toProto(p payment.Payment) *paymentv1.Payment {
	id := p.ID.String()
	out := &paymentv1.Payment{
		PaymentId:     id,
		OrderId:       p.OrderID.String(),
		Status:        statusToProto[p.Status],
		DeclineReason: p.DeclineReason,
		VersionToken:  s.signer.Token(event.AggregatePayment, id, p.Version),
		CreateTime:    timestamppb.New(p.CreatedAt),
		UpdateTime:    timestamppb.New(p.UpdatedAt),
	}
	if p.Status != payment.StatusVoided {
		out.Amount = commonv1.NewMoney(p.Amount.Currency, p.Amount.Minor)
		out.Refunded = commonv1.NewMoney(p.Amount.Currency, p.Refunded)
	}
	return out
}
