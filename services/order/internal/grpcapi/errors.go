package grpcapi

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/grpcerr"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/order/internal/app"
	"github.com/goodgo/goodgo/services/order/internal/order"
)

// toStatus is the one place where errors become gRPC statuses. Domain errors
// (*order.Error) carry client-safe messages naming the field and are sent
// as they are; every other message is fixed here. Anything unrecognised is
// logged with its detail and returned as Internal "internal error".
//
// Database failures that a retry may not meet are told apart from bugs so
// that callers retry instead of giving up: a lost or refused connection, an
// overloaded or restarting server, a lock_timeout or statement_timeout
// (postgres.IsTransient) is Unavailable; a serialization failure or
// deadlock, whose transaction the server rolled back, is Aborted.
func (s *Server) toStatus(ctx context.Context, rpc string, err error) error {
	var de *order.Error
	switch {
	case errors.As(err, &de):
		return status.Error(domainCode(de.Kind), de.Error())
	case errors.Is(err, app.ErrIdempotencyKeyReused):
		// The same words as the idempotency interceptor, which catches this
		// case first while Redis holds the key.
		return status.Error(codes.FailedPrecondition, "idempotency-key was already used with a different request")
	case errors.Is(err, app.ErrCatalogUnavailable):
		s.logger.WarnContext(ctx, "catalog unavailable", "rpc", rpc, "error", err)
		return status.Error(codes.Unavailable, "the product catalog is unavailable; retry later")
	case errors.Is(err, optlock.ErrConflict):
		// Internal writers retry conflicts; this is what is left after the
		// retries, under heavy contention on one order.
		s.logger.WarnContext(ctx, "order update conflict after retries", "rpc", rpc, "error", err)
		return status.Error(codes.Aborted, "the order is being changed concurrently; retry")
	default:
		return grpcerr.Fallback(ctx, s.logger, "order request", err, "rpc", rpc)
	}
}

func domainCode(kind error) codes.Code {
	switch {
	case errors.Is(kind, order.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(kind, order.ErrNotFound):
		return codes.NotFound
	case errors.Is(kind, order.ErrFailedPrecondition):
		return codes.FailedPrecondition
	case errors.Is(kind, order.ErrPermissionDenied):
		return codes.PermissionDenied
	default:
		return codes.Internal
	}
}
