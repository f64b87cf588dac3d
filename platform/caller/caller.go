// Package caller carries the identity of the calling user or service through
// a request's context. Until authentication exists the identity is taken from
// the `x-user-id` gRPC metadata entry (see grpcserver); once it does, only
// the authentication interceptor sets it, and nothing else in the code changes.
package caller

import "context"

// MetadataKey is the gRPC metadata entry that names the caller.
const MetadataKey = "x-user-id"

// Anonymous is the identity of a request that names no caller.
const Anonymous = "anonymous"

type ctxKey struct{}

// WithID returns a context that carries the caller id.
func WithID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// ID returns the caller id carried by ctx, or Anonymous.
func ID(ctx context.Context) string {
	if id, ok := ctx.Value(ctxKey{}).(string); ok && id != "" {
		return id
	}
	return Anonymous
}
