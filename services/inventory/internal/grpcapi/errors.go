package grpcapi

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/grpcerr"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// Client-facing messages of errors whose detail stays in the log.
const (
	msgStale      = "version_token: stale or invalid; read the product again"
	msgNotAToken  = "version_token: not a version token; use the one GetStock returned"
	msgMismatch   = "order_id: the order already has a reservation with different items"
	msgForbidden  = "caller may not adjust stock"
	msgOutOfRange = "delta: would take available below 0 or above 1000000000"
)

// toStatus maps a use-case error to the status sent to the client. Only
// domain errors built from the request itself (FieldError, NotFoundError)
// carry their text; anything unexpected is logged with its detail and sent
// as Internal "internal error".
//
// Database failures that a retry may not meet are told apart from bugs, so
// that callers (the saga, clients) retry them instead of giving up: a lost
// or refused connection, an overloaded or restarting server, a lock_timeout
// or statement_timeout (postgres.IsTransient) is Unavailable; a
// serialization failure or deadlock, whose transaction the server rolled
// back, is Aborted. Every mutating RPC is idempotent, so retrying either
// with the same idempotency key is safe.
func (s *Server) toStatus(ctx context.Context, method string, err error) error {
	var (
		field    *inventory.FieldError
		notFound *inventory.NotFoundError
	)
	switch {
	case errors.As(err, &field):
		return status.Error(codes.InvalidArgument, field.Error())
	case errors.As(err, &notFound):
		return status.Error(codes.NotFound, notFound.Error())
	case errors.Is(err, inventory.ErrPermissionDenied):
		return status.Error(codes.PermissionDenied, msgForbidden)
	case errors.Is(err, inventory.ErrReservationMismatch):
		return status.Error(codes.AlreadyExists, msgMismatch)
	case errors.Is(err, inventory.ErrStockOutOfRange):
		return status.Error(codes.FailedPrecondition, msgOutOfRange)
	case errors.Is(err, optlock.ErrMalformedToken):
		return status.Error(codes.InvalidArgument, msgNotAToken)
	case errors.Is(err, optlock.ErrConflict), errors.Is(err, optlock.ErrInvalidToken):
		return status.Error(codes.Aborted, msgStale)
	}
	return grpcerr.Fallback(ctx, s.logger, "inventory request", err, "method", method)
}
