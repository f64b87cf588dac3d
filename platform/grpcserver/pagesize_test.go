package grpcserver_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/grpcserver"
)

func TestPageSize(t *testing.T) {
	for _, tc := range []struct {
		requested int32
		want      int
	}{{0, 20}, {1, 1}, {20, 20}, {100, 100}, {101, 100}, {1 << 30, 100}} {
		got, err := grpcserver.PageSize(tc.requested, 20, 100)
		require.NoError(t, err, tc.requested)
		require.Equal(t, tc.want, got, tc.requested)
	}
	_, err := grpcserver.PageSize(-1, 20, 100)
	require.Equal(t, codes.InvalidArgument, status.Code(err))
}
