package grpcserver

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Values a grpc-go client refuses to send but another client could.
func TestCallerFromMetadataRejectsNonPrintable(t *testing.T) {
	for _, v := range []string{"bob\x07", "tab\there", "caf\u00e9", "nul\x00"} {
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-user-id", v))
		_, ok, err := callerFromMetadata(ctx)
		require.False(t, ok)
		require.Equal(t, codes.InvalidArgument, status.Code(err), v)
		require.Contains(t, status.Convert(err).Message(), "x-user-id")
	}
}

func TestCallerFromMetadataRejectsRepeatedEntry(t *testing.T) {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-user-id", "a", "x-user-id", "b"))
	_, _, err := callerFromMetadata(ctx)
	require.Equal(t, codes.InvalidArgument, status.Code(err))
}

func TestCallerFromMetadataAcceptsPrintableASCII(t *testing.T) {
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("x-user-id", "svc:orchestrator ~!"))
	id, ok, err := callerFromMetadata(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "svc:orchestrator ~!", id)
}
