package grpcapi

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
)

// toStatus is the one mapping from errors to gRPC statuses. Only messages
// written for clients leave the process (field errors and the domain's
// sentinel texts); anything else is logged with its detail and reported as
// Internal "internal error".
func (s *Server) toStatus(ctx context.Context, err error) error {
	var fe *payment.FieldError
	switch {
	case errors.As(err, &fe):
		return status.Error(codes.InvalidArgument, fe.Error())
	case errors.Is(err, payment.ErrNotFound):
		return status.Error(codes.NotFound, "payment not found")
	case errors.Is(err, payment.ErrAmountMismatch):
		return status.Error(codes.FailedPrecondition, payment.ErrAmountMismatch.Error())
	case errors.Is(err, payment.ErrNotRefundable):
		return status.Error(codes.FailedPrecondition, "payment is DECLINED: nothing was captured, nothing can be refunded")
	case errors.Is(err, optlock.ErrConflict):
		// Internal retries were spent on a hot payment: the client may retry
		// with the same idempotency key.
		s.logger.WarnContext(ctx, "payment update conflict", "err", err)
		return status.Error(codes.Aborted, "payment changed concurrently, retry")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	default:
		s.logger.ErrorContext(ctx, "payment request failed", "err", err)
		return status.Error(codes.Internal, "internal error")
	}
}
