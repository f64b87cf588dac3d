package idempotency_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/servicetest"
)

const (
	service    = "goodgo.test.v1.Test"
	methodDo   = "/" + service + "/Do"     // guarded, unsafe without Redis
	methodSafe = "/" + service + "/DoSafe" // guarded, a database constraint makes it safe without Redis
	methodRead = "/" + service + "/Read"   // not guarded

	methodSensitive = "/" + service + "/DoSensitive" // guarded, keys forgotten on logout
	redisAddr       = "127.0.0.1:6379"
)

var policies = map[string]idempotency.Policy{
	methodDo:        {},
	methodSafe:      {RedisDownSafe: true},
	methodSensitive: {Sensitive: true},
}

// testService is the fake neighbour behind the real interceptor: it counts
// executions and acts on the request value.
//
//	"ok:<x>"        returns "<x>#<execution number>"
//	"precondition"  fails with FailedPrecondition and a detail
//	"flaky"         fails with Unavailable on its first execution, then succeeds
//	"block"         waits for release to be closed, then succeeds (or for its context to end)
//	"wait"          waits for its context to end and returns its error
//	"notfound"      fails with NotFound
//	"denied"        fails with PermissionDenied
type testService struct {
	executions atomic.Int64
	started    chan struct{} // receives once per "block" execution
	release    chan struct{}
	mu         sync.Mutex
	keys       []string // KeyFromContext of each execution
}

func (s *testService) handle(ctx context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	n := s.executions.Add(1)
	key, _ := idempotency.KeyFromContext(ctx)
	s.mu.Lock()
	s.keys = append(s.keys, key)
	s.mu.Unlock()
	switch v := in.GetValue(); {
	case strings.HasPrefix(v, "ok:"):
		return wrapperspb.String(fmt.Sprintf("%s#%d", strings.TrimPrefix(v, "ok:"), n)), nil
	case v == "precondition":
		st, err := status.New(codes.FailedPrecondition, "out of stock").WithDetails(wrapperspb.String("sku-1"))
		if err != nil {
			return nil, err
		}
		return nil, st.Err()
	case v == "flaky":
		if n == 1 {
			return nil, status.Error(codes.Unavailable, "payment provider timed out")
		}
		return wrapperspb.String(fmt.Sprintf("flaky#%d", n)), nil
	case v == "block":
		s.started <- struct{}{}
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return wrapperspb.String(fmt.Sprintf("block#%d", n)), nil
	case v == "wait":
		<-ctx.Done()
		return nil, ctx.Err()
	case v == "notfound":
		return nil, status.Error(codes.NotFound, "order not found")
	case v == "denied":
		return nil, status.Error(codes.PermissionDenied, "not your order")
	}
	return nil, status.Error(codes.Internal, "unknown test request")
}

func (s *testService) desc() *grpc.ServiceDesc {
	method := func(name string) grpc.MethodDesc {
		return grpc.MethodDesc{MethodName: name, Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) { return s.handle(ctx, req.(*wrapperspb.StringValue)) }
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + service + "/" + name}, h)
		}}
	}
	return &grpc.ServiceDesc{
		ServiceName: service,
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{method("Do"), method("DoSafe"), method("DoSensitive"), method("Read")},
	}
}

// testUserKey is the metadata entry that callerFromMetadata, the test's
// stand-in for authz's verified identity, reads the user from.
const testUserKey = "test-user"

// callerFromMetadata stands in for the authentication interceptor.
func callerFromMetadata(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if ids := md.Get(testUserKey); len(ids) == 1 {
		ctx = caller.With(ctx, caller.Identity{User: ids[0]})
	}
	return handler(ctx, req)
}

type testBundle struct {
	svc    *testService
	conn   *grpc.ClientConn
	guard  *idempotency.Guard
	store  *idempotency.RedisStore
	rdb    *redis.Client
	prefix string
	reg    *prometheus.Registry
}

// newRedis returns a client of the test Redis and a key prefix unique to the
// test, whose keys are deleted at cleanup.
// newStore is a RedisStore on rdb under prefix, sealing with a fresh key.
func newStore(tb testing.TB, rdb redis.UniversalClient, prefix string) *idempotency.RedisStore {
	tb.Helper()
	store, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix, Service: "svc", Keys: servicetest.Keyring(tb, "k1")})
	require.NoError(tb, err)
	return store
}

func newRedis(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	require.NoError(tb, rdb.Ping(context.Background()).Err(), "the tests need Redis on %s", redisAddr)
	prefix := "idemtest:" + rand.Text() + ":"
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
			if len(keys) == 1000 {
				require.NoError(tb, rdb.Unlink(ctx, keys...).Err())
				keys = keys[:0]
			}
		}
		require.NoError(tb, iter.Err())
		if len(keys) > 0 {
			require.NoError(tb, rdb.Unlink(ctx, keys...).Err())
		}
		require.NoError(tb, rdb.Close())
	})
	return rdb, prefix
}

// setup starts a gRPC server on bufconn with the caller and idempotency
// interceptors over the given Redis client (nil: the test Redis).
func setup(t *testing.T, opts idempotency.Options, rdb redis.UniversalClient) *testBundle {
	t.Helper()
	testRedis, prefix := newRedis(t)
	if rdb == nil {
		rdb = testRedis
	}
	b := &testBundle{
		svc:    &testService{started: make(chan struct{}, 100), release: make(chan struct{})},
		store:  newStore(t, rdb, prefix),
		rdb:    testRedis,
		prefix: prefix + "svc:",
		reg:    prometheus.NewRegistry(),
	}
	var err error
	b.guard, err = idempotency.New(b.store, policies, opts, b.reg, nil)
	require.NoError(t, err)

	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(callerFromMetadata, b.guard.UnaryServerInterceptor()))
	srv.RegisterService(b.svc.desc(), nil)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	b.conn, err = grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.conn.Close() })
	return b
}

type result struct {
	resp    *wrapperspb.StringValue
	header  metadata.MD
	err     error
	replay  bool
	errCode codes.Code
}

// call invokes method as user with the idempotency key (none if key is "-").
func (b *testBundle) call(t *testing.T, method, user, key, value string) result {
	t.Helper()
	md := metadata.MD{}
	if user != "" {
		md.Append(testUserKey, user)
	}
	if key != "-" {
		md.Append(idempotency.MetadataKey, key)
	}
	ctx := metadata.NewOutgoingContext(t.Context(), md)
	var r result
	resp := new(wrapperspb.StringValue)
	r.err = b.conn.Invoke(ctx, method, wrapperspb.String(value), resp, grpc.Header(&r.header))
	if r.err == nil {
		r.resp = resp
	}
	r.errCode = status.Code(r.err)
	r.replay = len(r.header.Get(idempotency.ReplayedHeader)) == 1 && r.header.Get(idempotency.ReplayedHeader)[0] == "true"
	return r
}

func TestRetryReplaysTheResponse(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)

	first := b.call(t, methodDo, "alice", "key-1", "ok:order")
	require.NoError(t, first.err)
	require.Equal(t, "order#1", first.resp.GetValue())
	require.False(t, first.replay)

	for range 3 {
		again := b.call(t, methodDo, "alice", "key-1", "ok:order")
		require.NoError(t, again.err)
		require.True(t, proto.Equal(first.resp, again.resp), "got %v", again.resp)
		require.True(t, again.replay, "a replay says so in the header")
	}
	require.Equal(t, int64(1), b.svc.executions.Load(), "the handler ran once")
	require.Equal(t, 4.0, servicetest.Metric(t, b.reg, "idempotency_checks_total", "method", methodDo))
	require.Equal(t, 3.0, servicetest.Metric(t, b.reg, "idempotency_hits_total", "method", methodDo))
}

func TestRetryReplaysTheBusinessError(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)

	first := b.call(t, methodDo, "alice", "key-1", "precondition")
	require.Equal(t, codes.FailedPrecondition, first.errCode)
	again := b.call(t, methodDo, "alice", "key-1", "precondition")
	require.True(t, again.replay)
	require.True(t, proto.Equal(status.Convert(first.err).Proto(), status.Convert(again.err).Proto()),
		"same code, message and details: %v vs %v", first.err, again.err)
	require.Len(t, status.Convert(again.err).Details(), 1)
	require.Equal(t, int64(1), b.svc.executions.Load())
}

func TestSameKeyWithADifferentRequestIsRejected(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)

	require.NoError(t, b.call(t, methodDo, "alice", "key-1", "ok:a").err)
	other := b.call(t, methodDo, "alice", "key-1", "ok:b")
	require.Equal(t, codes.FailedPrecondition, other.errCode)
	require.Equal(t, "idempotency-key was already used with a different request", status.Convert(other.err).Message())
	require.Equal(t, int64(1), b.svc.executions.Load(), "the different request never ran")
	require.Equal(t, 1.0, servicetest.Metric(t, b.reg, "idempotency_conflicts_total", "method", methodDo, "reason", "fingerprint_mismatch"))

	original := b.call(t, methodDo, "alice", "key-1", "ok:a")
	require.NoError(t, original.err)
	require.Equal(t, "a#1", original.resp.GetValue(), "the original request still replays")
}

func TestKeysAreScopedByCallerAndMethod(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)

	alice := b.call(t, methodDo, "alice", "key-1", "ok:x")
	bob := b.call(t, methodDo, "bob", "key-1", "ok:x")
	safe := b.call(t, methodSafe, "alice", "key-1", "ok:x")
	for _, r := range []result{alice, bob, safe} {
		require.NoError(t, r.err)
		require.False(t, r.replay)
	}
	require.Equal(t, int64(3), b.svc.executions.Load())
	require.Equal(t, []string{
		idempotency.Key("user:alice", methodDo, "key-1"),
		idempotency.Key("user:bob", methodDo, "key-1"),
		idempotency.Key("user:alice", methodSafe, "key-1"),
	}, b.svc.keys, "the handler sees the hashed, scoped key")
}

func TestAnonymousCallersGetNoKeys(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)
	r := b.call(t, methodDo, "", "key-1", "ok:x")
	require.Equal(t, codes.Unauthenticated, r.errCode, r.err)
	require.Zero(t, b.svc.executions.Load())
}

// The seed's logout rule: a user's keys of sensitive RPCs can be cleared,
// and only those.
func TestForgetClearsAUsersSensitiveKeysOnly(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)
	first := b.call(t, methodSensitive, "alice", "key-1", "ok:address")
	require.NoError(t, first.err)
	require.True(t, b.call(t, methodSensitive, "alice", "key-1", "ok:address").replay, "replayed before logout")
	require.NoError(t, b.call(t, methodDo, "alice", "key-2", "ok:x").err)
	require.NoError(t, b.call(t, methodSensitive, "bob", "key-1", "ok:address").err)

	n, err := b.guard.Forget(t.Context(), "alice")
	require.NoError(t, err)
	require.Equal(t, 1, n)

	again := b.call(t, methodSensitive, "alice", "key-1", "ok:address")
	require.NoError(t, again.err)
	require.False(t, again.replay, "after logout the key is gone: the call runs again")
	require.NotEqual(t, first.resp.GetValue(), again.resp.GetValue())
	require.True(t, b.call(t, methodDo, "alice", "key-2", "ok:x").replay, "a key of an RPC not marked sensitive stays")
	require.True(t, b.call(t, methodSensitive, "bob", "key-1", "ok:address").replay, "another user's keys stay")

	n, err = b.guard.Forget(t.Context(), "nobody")
	require.NoError(t, err)
	require.Zero(t, n)
}

func TestDuplicateWhileInProgressIsAbortedAndRunsOnce(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)
	const n = 50

	// The first execution blocks until all other 49 calls were answered, so
	// each of them certainly arrives while it is in progress.
	results := make(chan result, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { results <- b.call(t, methodDo, "alice", "key-1", "block") })
	}
	<-b.svc.started
	aborted := 0
	for range n - 1 {
		r := <-results
		require.Equal(t, codes.Aborted, r.errCode, "%v", r.err)
		require.Equal(t, "a request with this idempotency-key is in progress; retry later", status.Convert(r.err).Message())
		aborted++
	}
	close(b.svc.release)
	wg.Wait()
	winner := <-results
	require.NoError(t, winner.err)
	require.Equal(t, "block#1", winner.resp.GetValue())
	require.Equal(t, n-1, aborted)
	require.Equal(t, int64(1), b.svc.executions.Load())
	require.Equal(t, float64(n-1), servicetest.Metric(t, b.reg, "idempotency_conflicts_total", "method", methodDo, "reason", "in_progress"))

	retry := b.call(t, methodDo, "alice", "key-1", "block")
	require.NoError(t, retry.err, "an aborted caller's retry gets the result")
	require.Equal(t, "block#1", retry.resp.GetValue())
}

func TestFiftyConcurrentIdenticalRequestsHaveOneEffect(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)
	const n = 50

	var wg sync.WaitGroup
	results := make([]result, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			results[i] = b.call(t, methodDo, "alice", "key-1", "ok:pay")
		})
	}
	close(start)
	wg.Wait()

	var ok, aborted int
	for _, r := range results {
		switch r.errCode {
		case codes.OK:
			ok++
			require.Equal(t, "pay#1", r.resp.GetValue(), "every success is the one execution's response")
		case codes.Aborted:
			aborted++
		default:
			require.Failf(t, "unexpected status", "%v", r.err)
		}
	}
	require.Equal(t, int64(1), b.svc.executions.Load(), "exactly one effect")
	require.Equal(t, n, ok+aborted)
	require.GreaterOrEqual(t, ok, 1)
	require.Equal(t, float64(ok-1), servicetest.Metric(t, b.reg, "idempotency_hits_total", "method", methodDo))
	t.Logf("%d replayed or original, %d in progress", ok, aborted)
}

func TestTransientErrorReleasesTheKey(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)

	first := b.call(t, methodDo, "alice", "key-1", "flaky")
	require.Equal(t, codes.Unavailable, first.errCode)
	exists, err := b.rdb.Exists(t.Context(), b.prefix+idempotency.Key("user:alice", methodDo, "key-1")).Result()
	require.NoError(t, err)
	require.Zero(t, exists, "a transient failure leaves no record")

	second := b.call(t, methodDo, "alice", "key-1", "flaky")
	require.NoError(t, second.err, "the retry runs again")
	require.False(t, second.replay)
	third := b.call(t, methodDo, "alice", "key-1", "flaky")
	require.NoError(t, third.err)
	require.True(t, third.replay)
	require.Equal(t, "flaky#2", third.resp.GetValue())
	require.Equal(t, int64(2), b.svc.executions.Load())
}

func TestRedisDown(t *testing.T) {
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = down.Close() })
	b := setup(t, idempotency.Options{}, down)

	unsafe := b.call(t, methodDo, "alice", "key-1", "ok:charge")
	require.Equal(t, codes.Unavailable, unsafe.errCode)
	require.Equal(t, "idempotency store unavailable", status.Convert(unsafe.err).Message())
	require.Zero(t, b.svc.executions.Load(), "an unguarded run of an unsafe method is refused")

	safe := b.call(t, methodSafe, "alice", "key-2", "ok:order")
	require.NoError(t, safe.err, "a method guarded by its database constraint runs")
	require.Equal(t, int64(1), b.svc.executions.Load())
	require.Equal(t, []string{idempotency.Key("user:alice", methodSafe, "key-2")}, b.svc.keys,
		"the handler still gets the key for its unique column")
	require.Equal(t, 2.0, servicetest.Metric(t, b.reg, "idempotency_redis_errors_total"))
}

func TestKeyTTLs(t *testing.T) {
	opts := idempotency.Options{TTL: 90 * time.Second, LockTTL: 7 * time.Second}
	b := setup(t, opts, nil)
	redisKey := b.prefix + idempotency.Key("user:alice", methodDo, "key-1")

	done := make(chan result, 1)
	go func() { done <- b.call(t, methodDo, "alice", "key-1", "block") }()
	<-b.svc.started
	pttl, err := b.rdb.PTTL(t.Context(), redisKey).Result()
	require.NoError(t, err)
	require.True(t, pttl > 6*time.Second && pttl <= opts.LockTTL, "in progress: lock TTL, got %v", pttl)

	close(b.svc.release)
	require.NoError(t, (<-done).err)
	pttl, err = b.rdb.PTTL(t.Context(), redisKey).Result()
	require.NoError(t, err)
	require.True(t, pttl > 89*time.Second && pttl <= opts.TTL, "completed: full TTL, got %v", pttl)
	require.Equal(t, 90.0, servicetest.Metric(t, b.reg, "idempotency_key_ttl_seconds"))
}

func TestDefaultTTLIsADay(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)
	require.NoError(t, b.call(t, methodDo, "alice", "key-1", "ok:x").err)
	pttl, err := b.rdb.PTTL(t.Context(), b.prefix+idempotency.Key("user:alice", methodDo, "key-1")).Result()
	require.NoError(t, err)
	require.True(t, pttl > 23*time.Hour+59*time.Minute && pttl <= 24*time.Hour, "got %v", pttl)
	require.Equal(t, 86400.0, servicetest.Metric(t, b.reg, "idempotency_key_ttl_seconds"))
}

func TestAbandonedClaimExpires(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)
	// A server claimed the key and crashed: its claim has a short lock TTL.
	req, err := proto.MarshalOptions{Deterministic: true}.Marshal(wrapperspb.String("ok:x"))
	require.NoError(t, err)
	fp := sha256Sum(req)
	_, err = b.store.Claim(t.Context(), idempotency.Key("user:alice", methodDo, "key-1"), idempotency.NewOwner(), fp, 300*time.Millisecond)
	require.NoError(t, err)

	require.Equal(t, codes.Aborted, b.call(t, methodDo, "alice", "key-1", "ok:x").errCode)
	require.Eventually(t, func() bool {
		return b.call(t, methodDo, "alice", "key-1", "ok:x").err == nil
	}, 5*time.Second, 50*time.Millisecond, "the key is usable once the abandoned claim expired")
	require.Equal(t, int64(1), b.svc.executions.Load())
}

func TestKeyValidation(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)

	tests := []struct {
		name    string
		key     string
		message string
	}{
		{"missing", "-", "idempotency-key metadata is required"},
		{"empty", "", "idempotency-key metadata is required"},
		{"256 characters", strings.Repeat("k", 256), "idempotency-key must be at most 255 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := b.call(t, methodDo, "alice", tt.key, "ok:x")
			require.Equal(t, codes.InvalidArgument, r.errCode)
			require.Equal(t, tt.message, status.Convert(r.err).Message())
		})
	}
	require.Zero(t, b.svc.executions.Load())

	require.NoError(t, b.call(t, methodDo, "alice", strings.Repeat("k", 255), "ok:x").err, "255 characters are fine")
	require.NoError(t, b.call(t, methodRead, "alice", "-", "ok:x").err, "unguarded methods need no key")
	require.Zero(t, servicetest.Metric(t, b.reg, "idempotency_checks_total", "method", methodSafe))
}

// TestInterceptorDirectly covers what a well-behaved gRPC client cannot send
// and what a server would not survive without a recovery interceptor.
func TestInterceptorDirectly(t *testing.T) {
	rdb, prefix := newRedis(t)
	store := newStore(t, rdb, prefix)
	g, err := idempotency.New(store, policies, idempotency.Options{}, prometheus.NewRegistry(), nil)
	require.NoError(t, err)
	intercept := g.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: methodDo}
	ran := 0
	ok := func(context.Context, any) (any, error) { ran++; return wrapperspb.String("ok"), nil }
	alice := caller.With(t.Context(), caller.Identity{User: "alice"})
	ctxWith := func(md metadata.MD) context.Context { return metadata.NewIncomingContext(alice, md) }

	t.Run("non-printable key", func(t *testing.T) {
		for _, k := range []string{"a\x00b", "tab\there", "é", "line\n"} {
			_, err := intercept(ctxWith(metadata.Pairs(idempotency.MetadataKey, k)), wrapperspb.String("x"), info, ok)
			require.Equal(t, codes.InvalidArgument, status.Code(err), "%q", k)
			require.Contains(t, status.Convert(err).Message(), "idempotency-key")
		}
		require.Zero(t, ran)
	})
	t.Run("key sent twice", func(t *testing.T) {
		_, err := intercept(ctxWith(metadata.Pairs(idempotency.MetadataKey, "a", idempotency.MetadataKey, "b")), wrapperspb.String("x"), info, ok)
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		require.Zero(t, ran)
	})
	t.Run("handler panic releases the key", func(t *testing.T) {
		ctx := ctxWith(metadata.Pairs(idempotency.MetadataKey, "panic-key"))
		require.Panics(t, func() {
			_, _ = intercept(ctx, wrapperspb.String("x"), info, func(context.Context, any) (any, error) { panic("bug") })
		})
		resp, err := intercept(ctx, wrapperspb.String("x"), info, ok)
		require.NoError(t, err, "the retry is not blocked until LockTTL")
		require.Equal(t, "ok", resp.(*wrapperspb.StringValue).GetValue())
		require.Equal(t, 1, ran)
	})
	t.Run("cancelled client is not a store failure", func(t *testing.T) {
		before := ran
		ctx, cancel := context.WithCancel(ctxWith(metadata.Pairs(idempotency.MetadataKey, "cancel-key")))
		cancel()
		_, err := intercept(ctx, wrapperspb.String("x"), info, ok)
		require.Equal(t, codes.Canceled, status.Code(err))
		require.Equal(t, before, ran, "the handler did not run")
	})
	t.Run("unknown fields do not change the fingerprint and reach the handler", func(t *testing.T) {
		ctx := ctxWith(metadata.Pairs(idempotency.MetadataKey, "unknown-fields-key"))
		plain := func() *structpb.Struct {
			s, err := structpb.NewStruct(map[string]any{"sku": "a-1", "lines": []any{"x", map[string]any{"qty": 2}}})
			require.NoError(t, err)
			return s
		}
		// A newer client's request: unknown fields at the top, inside a map
		// value and inside a list element. The handler gets them as sent.
		req := plain()
		addUnknown(req)
		addUnknown(req.GetFields()["sku"])
		addUnknown(req.GetFields()["lines"].GetListValue().GetValues()[1].GetStructValue())
		before := ran
		sawUnknown := false
		_, err := intercept(ctx, req, info, func(ctx context.Context, r any) (any, error) {
			sawUnknown = len(r.(*structpb.Struct).ProtoReflect().GetUnknown()) > 0
			return ok(ctx, r)
		})
		require.NoError(t, err)
		require.True(t, sawUnknown, "fingerprinting left the request intact")
		require.NotEmpty(t, req.GetFields()["sku"].ProtoReflect().GetUnknown())

		// Its retry through an older proxy that dropped them is the same request.
		resp, err := intercept(ctx, plain(), info, ok)
		require.NoError(t, err, "a replay, not a fingerprint mismatch")
		require.Equal(t, "ok", resp.(*wrapperspb.StringValue).GetValue())
		require.Equal(t, before+1, ran, "the handler ran once")

		// A different known field is still a different request.
		other := plain()
		other.Fields["sku"] = structpb.NewStringValue("a-2")
		_, err = intercept(ctx, other, info, ok)
		require.Equal(t, codes.FailedPrecondition, status.Code(err))
	})
}

// addUnknown appends a field unknown to m's type (number 999), as a client
// with a newer schema would send it.
func addUnknown(m proto.Message) {
	r := m.ProtoReflect()
	b := protowire.AppendTag(r.GetUnknown(), 999, protowire.BytesType)
	r.SetUnknown(protowire.AppendBytes(b, []byte("from a newer schema")))
}

func TestHandlerTimeoutEndsTheHandler(t *testing.T) {
	opts := idempotency.Options{LockTTL: 100 * time.Millisecond, HandlerTimeout: 500 * time.Millisecond}
	b := setup(t, opts, nil)
	redisKey := b.prefix + idempotency.Key("user:alice", methodDo, "key-1")

	// A handler that would run forever, called without a deadline, honours
	// its context: it ends after HandlerTimeout, its claim renewed until
	// then (five lock TTLs), and the key is free for a retry.
	start := time.Now()
	first := b.call(t, methodDo, "alice", "key-1", "wait")
	elapsed := time.Since(start)
	require.Equal(t, codes.DeadlineExceeded, first.errCode, "%v", first.err)
	require.GreaterOrEqual(t, elapsed, opts.HandlerTimeout)
	exists, err := b.rdb.Exists(t.Context(), redisKey).Result()
	require.NoError(t, err)
	require.Zero(t, exists, "the claim was released")
	require.Zero(t, servicetest.Metric(t, b.reg, "idempotency_leases_lost_total", "method", methodDo), "renewed throughout")

	second := b.call(t, methodDo, "alice", "key-1", "wait")
	require.Equal(t, codes.DeadlineExceeded, second.errCode)
	require.False(t, second.replay)
	require.Equal(t, int64(2), b.svc.executions.Load(), "the retry ran again")
}

func TestNotFoundAndPermissionDeniedAreNotReplayed(t *testing.T) {
	b := setup(t, idempotency.Options{}, nil)
	for i, tt := range []struct {
		value string
		code  codes.Code
	}{{"notfound", codes.NotFound}, {"denied", codes.PermissionDenied}} {
		key := "key-" + tt.value
		for attempt := range 2 {
			r := b.call(t, methodDo, "alice", key, tt.value)
			require.Equal(t, tt.code, r.errCode)
			require.False(t, r.replay, "%s attempt %d", tt.value, attempt)
		}
		require.Equal(t, int64(2*(i+1)), b.svc.executions.Load(), "every retry of %s runs: the answer may change", tt.value)
		exists, err := b.rdb.Exists(t.Context(), b.prefix+idempotency.Key("user:alice", methodDo, key)).Result()
		require.NoError(t, err)
		require.Zero(t, exists)
	}
}

func TestNewValidates(t *testing.T) {
	rdb, prefix := newRedis(t)
	store := newStore(t, rdb, prefix)

	_, err := idempotency.New(store, map[string]idempotency.Policy{"PlaceOrder": {}}, idempotency.Options{}, prometheus.NewRegistry(), nil)
	require.Error(t, err, "method names must be full")
	_, err = idempotency.New(nil, policies, idempotency.Options{}, prometheus.NewRegistry(), nil)
	require.Error(t, err)
	_, err = idempotency.New(store, policies, idempotency.Options{TTL: time.Microsecond}, prometheus.NewRegistry(), nil)
	require.Error(t, err)
	_, err = idempotency.New(store, policies, idempotency.Options{LockTTL: 29 * time.Millisecond}, prometheus.NewRegistry(), nil)
	require.ErrorContains(t, err, "LockTTL 29ms must be at least 30ms", "renewed every third of it")
	_, err = idempotency.New(store, policies, idempotency.Options{HandlerTimeout: time.Microsecond}, prometheus.NewRegistry(), nil)
	require.Error(t, err)
	_, err = idempotency.New(store, policies, idempotency.Options{LockTTL: idempotency.MinLockTTL, StoreTimeout: time.Second},
		prometheus.NewRegistry(), nil)
	require.NoError(t, err, "the lease does not have to outlast StoreTimeout: it is renewed while the outcome is stored")

	reg := prometheus.NewRegistry()
	_, err = idempotency.New(store, policies, idempotency.Options{}, reg, nil)
	require.NoError(t, err)
	_, err = idempotency.New(store, policies, idempotency.Options{}, reg, nil)
	require.Error(t, err, "metrics cannot be registered twice")
}
