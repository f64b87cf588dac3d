package grpcapi

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/grpcerr"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
)

// toStatus is the one mapping from errors to gRPC statuses. Only messages
// written for clients leave the process (field errors and the domain's
// sentinel texts); anything else is logged with its detail and reported as
// Internal "internal error".
//
// Database failures that a retry may not meet are told apart from bugs so
// that callers retry instead of giving up: a lost or refused connection, an
// overloaded or restarting server, a lock_timeout or statement_timeout
// (postgres.IsTransient) is Unavailable; a serialization failure or
// deadlock, whose transaction the server rolled back, is Aborted. Both
// mutating RPCs are idempotent, so a retry with the same key is safe.
func (s *Server) toStatus(ctx context.Context, err error) error {
	var fe *payment.FieldError
	switch {
	case errors.As(err, &fe):
		return status.Error(codes.InvalidArgument, fe.Error())
	case errors.Is(err, payment.ErrNotFound):
		return status.Error(codes.NotFound, "payment not found")
	case errors.Is(err, payment.ErrAmountMismatch):
		return status.Error(codes.FailedPrecondition, payment.ErrAmountMismatch.Error())
	case errors.Is(err, optlock.ErrConflict):
		// Internal retries were spent on a hot payment: the client may retry
		// with the same idempotency key.
		s.logger.WarnContext(ctx, "payment update conflict", "error", err)
		return status.Error(codes.Aborted, "payment changed concurrently, retry")
	default:
		return grpcerr.Fallback(ctx, s.logger, "payment request", err)
	}
}
