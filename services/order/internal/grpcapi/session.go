package grpcapi

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/logs"
	sessionv1 "github.com/goodgo/goodgo/proto/goodgo/session/v1"
)

// Forgetter forgets a user's idempotency keys of sensitive RPCs
// (idempotency.Guard).
type Forgetter interface {
	Forget(ctx context.Context, user string) (int, error)
}

// Sessions implements sessionv1.SessionService.
type Sessions struct {
	sessionv1.UnimplementedSessionServiceServer
	keys   Forgetter
	logger *slog.Logger
}

var _ sessionv1.SessionServiceServer = (*Sessions)(nil)

// NewSessions returns the SessionService over keys.
func NewSessions(keys Forgetter, logger *slog.Logger) *Sessions {
	return &Sessions{keys: keys, logger: logs.OrDiscard(logger)}
}

// Logout implements sessionv1.SessionServiceServer: the caller logs
// themselves out, an operator may log out another user.
func (s *Sessions) Logout(ctx context.Context, req *sessionv1.LogoutRequest) (*sessionv1.LogoutResponse, error) {
	id := caller.From(ctx)
	user := id.EndUser()
	if other := req.GetUserId(); other != "" && other != user {
		if !id.IsOperator() {
			return nil, status.Error(codes.PermissionDenied, "user_id: only operators may log out another user")
		}
		user = other
	}
	n, err := s.keys.Forget(ctx, user)
	if err != nil {
		s.logger.WarnContext(ctx, "logout: cannot forget idempotency keys", "user", user, "error", err)
		return nil, status.Error(codes.Unavailable, "the idempotency store is unavailable; retry")
	}
	s.logger.InfoContext(ctx, "user logged out; idempotency keys of sensitive calls forgotten", "user", user, "by", id.String(), "keys", n)
	return &sessionv1.LogoutResponse{ForgottenKeys: int32(n)}, nil
}
