package grpcclient_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
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

// A neighbour restarted on the same address is reached again soon after it
// is back, however long it was gone: the reconnect backoff is capped
// (grpcclient.ConnectParams), not grpc-go's default that grows to 2 minutes.
func TestDialReconnectsSoonAfterTheServerIsBack(t *testing.T) {
	pki := authtest.New(t)
	kit := pki.Kit("inventory")
	serve := func(lis net.Listener) *grpc.Server {
		srv := grpc.NewServer(grpc.Creds(kit.TLS.ServerCredentials()), grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			if err := stream.RecvMsg(new(emptypb.Empty)); err != nil {
				return err
			}
			return stream.SendMsg(new(emptypb.Empty))
		}))
		go func() { _ = srv.Serve(lis) }()
		t.Cleanup(srv.Stop)
		return srv
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	srv := serve(lis)
	conn := pki.DialAs("orchestrator", "inventory", addr)
	call := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		return conn.Invoke(ctx, "/any.Service/Method", &emptypb.Empty{}, &emptypb.Empty{})
	}
	require.NoError(t, call())

	// Down for 3 s while the caller keeps calling, as a saga step's retries
	// do: every failed connection attempt grows the backoff.
	srv.Stop()
	down := time.Now()
	for time.Since(down) < 3*time.Second {
		require.Error(t, call(), "the server is down")
		time.Sleep(100 * time.Millisecond) // the caller's pace, not a wait for a condition
	}
	lis, err = net.Listen("tcp", addr)
	require.NoError(t, err, "the same port again")
	serve(lis)
	back := time.Now()
	deadline := back.Add(5 * time.Second)
	for call() != nil {
		require.True(t, time.Now().Before(deadline), "not reconnected 5 s after the server came back")
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(back)
	t.Logf("first successful call %v after the server came back (down %v)", took.Round(time.Millisecond), back.Sub(down).Round(time.Millisecond))
	require.Less(t, took, 1500*time.Millisecond)
}

func TestRetryDelay(t *testing.T) {
	limited, err := status.New(codes.ResourceExhausted, "rate limit").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(250 * time.Millisecond)})
	require.NoError(t, err)
	d, ok := grpcclient.RetryDelay(limited.Err())
	require.True(t, ok)
	require.Equal(t, 250*time.Millisecond, d)

	d, ok = grpcclient.RetryDelay(status.Error(codes.ResourceExhausted, "no hint"))
	require.True(t, ok)
	require.Equal(t, 100*time.Millisecond, d, "a limit without RetryInfo waits a default")

	for _, err := range []error{nil, status.Error(codes.Unavailable, "down"), context.Canceled} {
		_, ok := grpcclient.RetryDelay(err)
		require.False(t, ok, "%v", err)
	}
}
