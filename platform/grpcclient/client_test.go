package grpcclient_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/token"
)

// seen is what the echo server learned of one call.
type seen struct {
	peer      string // the verified client service
	assertion token.Assertion
	asserted  bool
	verifyErr error
	bearer    []string
}

// echoServer serves as service with pki's certificate, answers every method
// with nothing and reports what it saw of the caller.
func echoServer(t *testing.T, pki *authtest.PKI, service string) (addr string, got chan seen) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	kit := pki.Kit(service)
	got = make(chan seen, 1)
	srv := grpc.NewServer(grpc.Creds(kit.TLS.ServerCredentials()), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
		var s seen
		p, _ := mtls.PeerFrom(stream.Context())
		s.peer = p.Service
		md, _ := metadata.FromIncomingContext(stream.Context())
		s.bearer = md.Get("authorization")
		if a := md.Get(token.AssertionMetadataKey); len(a) == 1 {
			s.assertion, s.verifyErr = kit.Assertions.Verify(a[0], p.Service)
			s.asserted = true
		}
		got <- s
		if err := stream.RecvMsg(new(emptypb.Empty)); err != nil {
			return err
		}
		return stream.SendMsg(new(emptypb.Empty))
	}))
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String(), got
}

func TestDialPresentsTheServiceCertificateAndActsForUsers(t *testing.T) {
	pki := authtest.New(t)
	addr, got := echoServer(t, pki, "payment")
	conn := pki.DialAs("orchestrator", "payment", addr)
	call := func(ctx context.Context) seen {
		require.NoError(t, conn.Invoke(ctx, "/any.Service/Method", &emptypb.Empty{}, &emptypb.Empty{}))
		return <-got
	}

	t.Run("the server sees the verified service", func(t *testing.T) {
		s := call(t.Context())
		require.Equal(t, "orchestrator", s.peer)
		require.False(t, s.asserted, "no delegation, no assertion")
	})
	t.Run("a delegated call carries a verifiable assertion", func(t *testing.T) {
		ctx := caller.WithDelegation(t.Context(), caller.Delegation{User: "alice", Permissions: []string{"orders.place"}})
		s := call(ctx)
		require.True(t, s.asserted)
		require.NoError(t, s.verifyErr)
		require.Equal(t, "alice", s.assertion.User)
		require.Equal(t, []string{"orders.place"}, s.assertion.Permissions)
	})
}

func TestDialRefusesAServerThatIsNotTheServiceMeant(t *testing.T) {
	pki := authtest.New(t)
	addr, _ := echoServer(t, pki, "inventory")
	conn := pki.DialAs("orchestrator", "payment", addr) // inventory answers at payment's address
	err := conn.Invoke(t.Context(), "/any.Service/Method", &emptypb.Empty{}, &emptypb.Empty{})
	require.Equal(t, codes.Unavailable, status.Code(err), err)
	require.Contains(t, err.Error(), "spiffe://goodgo/inventory")
}

func TestDialRefusesAServerOfAnotherCA(t *testing.T) {
	ours, theirs := authtest.New(t), authtest.New(t)
	addr, _ := echoServer(t, theirs, "payment")
	err := ours.DialAs("orchestrator", "payment", addr).Invoke(t.Context(), "/any.Service/Method", &emptypb.Empty{}, &emptypb.Empty{})
	require.Equal(t, codes.Unavailable, status.Code(err), err)
	require.Contains(t, err.Error(), "certificate")
}

func TestBearerSendsTheToken(t *testing.T) {
	pki := authtest.New(t)
	addr, got := echoServer(t, pki, "order")
	conn := pki.Dial(addr)
	require.NoError(t, conn.Invoke(t.Context(), "/any.Service/Method", &emptypb.Empty{}, &emptypb.Empty{},
		grpc.PerRPCCredentials(grpcclient.Bearer("tok"))))
	s := <-got
	require.Equal(t, []string{"Bearer tok"}, s.bearer)
	require.Empty(t, s.peer, "a user's client presents no certificate")
}
