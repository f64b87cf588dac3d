package grpcapi

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// Client-facing messages of errors whose detail stays in the log.
const (
	msgStale    = "version_token: stale or invalid; read the product again"
	msgMismatch = "order_id: the order already has a reservation with different items"
	msgInternal = "internal error"
)

// toStatus maps a use-case error to the status sent to the client. Only
// domain errors built from the request itself (FieldError, NotFoundError)
// carry their text; anything unexpected is logged with its detail and sent
// as Internal "internal error".
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
	case errors.Is(err, inventory.ErrReservationMismatch):
		return status.Error(codes.AlreadyExists, msgMismatch)
	case errors.Is(err, optlock.ErrConflict), errors.Is(err, optlock.ErrInvalidToken):
		return status.Error(codes.Aborted, msgStale)
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	s.logger.ErrorContext(ctx, "inventory request failed", "method", method, "error", err)
	return status.Error(codes.Internal, msgInternal)
}
