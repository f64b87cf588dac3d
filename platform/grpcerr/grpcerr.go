// Package grpcerr turns errors into gRPC statuses. Each service maps its
// own errors in its internal/grpcapi and ends in Fallback, so that what all
// services share (cancellation, deadlines, database failures, bugs) is
// answered the same everywhere and no internal text reaches a client.
package grpcerr

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/postgres"
)

// Fallback is the status of an error that a service's own errors do
// not account for; every service's mapping ends in it, so that these
// answers are the same everywhere:
//   - the caller's cancellation or deadline is theirs: Canceled,
//     DeadlineExceeded;
//   - a database failure that a retry may not meet (postgres.IsTransient: a
//     lost or refused connection, an overloaded or restarting server, a
//     lock_timeout or statement_timeout) is Unavailable, and a transaction
//     the server rolled back (serialization failure, deadlock) is Aborted:
//     both tell the caller to retry, and are logged as warnings;
//   - anything else is Internal, logged as an error.
//
// The error's own text never reaches the client. what names the request in
// the log line ("payment request"); attrs are added to it.
func Fallback(ctx context.Context, logger *slog.Logger, what string, err error, attrs ...any) error {
	switch {
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	case postgres.IsTransient(err):
		logger.WarnContext(ctx, what+" failed; transient", append(attrs, "error", err)...)
		return status.Error(codes.Unavailable, "temporarily unavailable; retry")
	case postgres.IsSerializationFailure(err):
		logger.WarnContext(ctx, what+" failed; rolled back by the database", append(attrs, "error", err)...)
		return status.Error(codes.Aborted, "concurrent update; retry")
	default:
		logger.ErrorContext(ctx, what+" failed", append(attrs, "error", err)...)
		return status.Error(codes.Internal, "internal error")
	}
}
