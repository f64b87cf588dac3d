package postgres

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes and classes IsTransient and IsSerializationFailure look
// for (https://www.postgresql.org/docs/current/errcodes-appendix.html).
const (
	classConnectionException   = "08" // connection_exception and its subclasses
	classInsufficientResources = "53" // out of memory, disk full, too_many_connections (53300)
	codeAdminShutdown          = "57P01"
	codeCrashShutdown          = "57P02"
	codeCannotConnectNow       = "57P03"
	codeLockNotAvailable       = "55P03" // lock_timeout, NOWAIT
	codeQueryCanceled          = "57014" // statement_timeout, pg_cancel_backend
	codeSerializationFailure   = "40001"
	codeDeadlockDetected       = "40P01"
)

// IsTransient reports whether err is a failure that the same operation,
// tried again a little later (on a fresh connection), may not meet: the
// connection failed or was lost (connection refused, reset, EOF, SQLSTATE
// class 08), the server is short of resources (class 53, including 53300
// too_many_connections), shutting down or starting up (57P01 admin_shutdown,
// 57P02 crash_shutdown, 57P03 cannot_connect_now), a lock wait hit
// lock_timeout (55P03 lock_not_available), or a statement was cancelled by
// statement_timeout (57014 query_canceled). Callers report these as
// codes.Unavailable.
//
// It returns false for nil, for context.Canceled and
// context.DeadlineExceeded (the caller gave up: retrying is its decision,
// and pgx reports a query interrupted by its context that way), for a
// closed pool, for every other SQLSTATE (constraint violations, syntax,
// permissions: the same statement fails again) and for serialization
// failures and deadlocks, which are IsSerializationFailure's (the whole
// transaction is retried, reported as codes.Aborted). A caller that
// installs pgconn.CancelRequestContextWatcherHandler gets 57014 for its own
// context cancellation too and must check its ctx.Err() first.
func IsTransient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	// A server error decides by its code, also inside a ConnectError: a
	// refused password is not transient, a server still starting is.
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch code := pgErr.Code; {
		case strings.HasPrefix(code, classConnectionException),
			strings.HasPrefix(code, classInsufficientResources),
			code == codeAdminShutdown, code == codeCrashShutdown, code == codeCannotConnectNow,
			code == codeLockNotAvailable, code == codeQueryCanceled:
			return true
		default:
			return false
		}
	}
	// No server answer: the connection could not be made or broke. pgconn
	// marks errors raised before anything was sent as safe to retry.
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return pgconn.SafeToRetry(err) ||
		errors.As(err, &connectErr) ||
		errors.As(err, &netErr) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// IsSerializationFailure reports whether err is (or wraps) a
// serialization_failure (40001, a SERIALIZABLE or REPEATABLE READ conflict)
// or a deadlock_detected (40P01) error: the server rolled the transaction
// back, and running the whole transaction again may succeed. Callers retry
// the transaction or report codes.Aborted.
func IsSerializationFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == codeSerializationFailure || pgErr.Code == codeDeadlockDetected)
}
