package optlock

import (
	"context"
	"errors"
	"log/slog"

	"github.com/goodgo/goodgo/platform/caller"
)

// ConflictError is a client's update refused for a stale version, with the
// versions involved. It wraps ErrConflict.
type ConflictError struct {
	Aggregate, ID string
	// Presented is the version the client's token carried; Current the
	// version found, or -1 when the update lost a race and it is unknown.
	Presented, Current int64
}

func (e *ConflictError) Error() string {
	return "optlock: " + e.Aggregate + " " + e.ID + " is not at the version presented"
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// LogRefusal logs a client's update refused for its version token — stale
// (err wraps ErrConflict), forged or from an unknown key (ErrInvalidToken),
// or not a token at all (ErrMalformedToken) — with the caller, the
// aggregate and the versions, for security monitoring: a stream of these
// from one user is someone probing tokens or racing others' updates. It
// logs nothing for any other error.
func LogRefusal(ctx context.Context, logger *slog.Logger, aggregate, id string, err error) {
	var kind string
	switch {
	case errors.Is(err, ErrConflict):
		kind = "stale"
	case errors.Is(err, ErrInvalidToken):
		kind = "invalid"
	case errors.Is(err, ErrMalformedToken):
		kind = "malformed"
	default:
		return
	}
	attrs := []any{"caller", caller.From(ctx).String(), "aggregate", aggregate, "aggregate_id", id, "token", kind}
	var ce *ConflictError
	if errors.As(err, &ce) {
		attrs = append(attrs, "presented_version", ce.Presented, "current_version", ce.Current)
	}
	logger.WarnContext(ctx, "version conflict", attrs...)
}
