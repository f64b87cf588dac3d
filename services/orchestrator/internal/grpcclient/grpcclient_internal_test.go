package grpcclient

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/saga"
)

func TestClassify(t *testing.T) {
	transient := []codes.Code{codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Canceled}
	permanent := []codes.Code{codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.PermissionDenied,
		codes.AlreadyExists, codes.Internal, codes.Unknown, codes.Unauthenticated}
	for _, c := range transient {
		err := classify("X", status.Error(c, "m"))
		require.False(t, saga.IsPermanent(err), c.String())
		require.Equal(t, c, status.Code(err), "the status survives wrapping")
	}
	for _, c := range permanent {
		require.True(t, saga.IsPermanent(classify("X", status.Error(c, "m"))), c.String())
	}
	require.NoError(t, classify("X", nil))
	require.True(t, saga.IsPermanent(classify("X", errors.New("not a status"))))
}

func TestOutgoingMetadata(t *testing.T) {
	md, ok := metadata.FromOutgoingContext(outgoing(context.Background(), "saga:1:payment"))
	require.True(t, ok)
	require.Equal(t, []string{"saga:1:payment"}, md.Get("idempotency-key"))
	require.Empty(t, md.Get("x-user-id"), "identity is the certificate's and the assertion's, never a header")
}
