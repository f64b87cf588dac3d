package grpcclient_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/grpcclient"
)

// echoServer answers every method with nothing and reports the x-user-id
// values it received.
func echoServer(t *testing.T) (addr string, got chan []string) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	got = make(chan []string, 1)
	srv := grpc.NewServer(grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		md, _ := metadata.FromIncomingContext(stream.Context())
		got <- md.Get(caller.MetadataKey)
		if err := stream.RecvMsg(new(emptypb.Empty)); err != nil {
			return err
		}
		return stream.SendMsg(new(emptypb.Empty))
	}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), got
}

func TestDialForwardsCallerID(t *testing.T) {
	addr, got := echoServer(t)
	conn, err := grpcclient.Dial(addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	call := func(ctx context.Context) []string {
		require.NoError(t, conn.Invoke(ctx, "/any.Service/Method", &emptypb.Empty{}, &emptypb.Empty{}))
		return <-got
	}

	t.Run("caller in context is sent", func(t *testing.T) {
		require.Equal(t, []string{"alice"}, call(caller.WithID(t.Context(), "alice")))
	})
	t.Run("anonymous sends nothing", func(t *testing.T) {
		require.Empty(t, call(t.Context()))
	})
	t.Run("explicit metadata is not overridden or duplicated", func(t *testing.T) {
		ctx := metadata.AppendToOutgoingContext(caller.WithID(t.Context(), "alice"), caller.MetadataKey, "svc:orchestrator")
		require.Equal(t, []string{"svc:orchestrator"}, call(ctx))
	})
	t.Run("streams forward it too", func(t *testing.T) {
		stream, err := conn.NewStream(caller.WithID(t.Context(), "bob"), &grpc.StreamDesc{ServerStreams: true}, "/any.Service/Stream")
		require.NoError(t, err)
		require.NoError(t, stream.SendMsg(&emptypb.Empty{}))
		require.NoError(t, stream.CloseSend())
		require.NoError(t, stream.RecvMsg(new(emptypb.Empty)))
		require.Equal(t, []string{"bob"}, <-got)
	})
}
