package authz_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/ratelimit"
	"github.com/goodgo/goodgo/platform/servicetest"
	"github.com/goodgo/goodgo/platform/token"
)

// The methods of the test API and their policies.
const (
	mGet     = "/test.v1.Orders/GetOrder"    // users, owner field, read limit
	mPlace   = "/test.v1.Orders/PlaceOrder"  // users, or the orchestrator for a user; write limit
	mList    = "/test.v1.Orders/ListOrders"  // operators
	mPurge   = "/test.v1.Orders/PurgeOrders" // admins
	mReserve = "/test.v1.Orders/Reserve"     // the orchestrator or order service, limited class (ignored for services)
	mPing    = "/test.v1.Orders/Ping"        // public
	mNone    = "/test.v1.Orders/Undeclared"  // no policy
	mHealth  = "/grpc.health.v1.Health/Check"
)

var policies = authz.Policies{
	mGet:     {Users: true, OwnerField: "customer_id", Limit: ratelimit.Read},
	mPlace:   {Users: true, Services: []string{"orchestrator"}, OnBehalfOf: "orders.place", OwnerField: "customer_id", Limit: ratelimit.Write},
	mList:    {Roles: []string{caller.RoleOperator}},
	mPurge:   {Roles: []string{caller.RoleAdmin}},
	mReserve: {Services: []string{"orchestrator", "order"}, Limit: ratelimit.Update},
	mPing:    {Public: true},
}

// fakeTokens verifies the bearer tokens it was given.
type fakeTokens map[string]struct {
	claims token.Claims
	err    error
}

func (f fakeTokens) Verify(_ context.Context, raw string) (token.Claims, error) {
	r, ok := f[raw]
	if !ok {
		return token.Claims{}, fmt.Errorf("%w: token %s is unknown", token.ErrSignature, raw)
	}
	return r.claims, r.err
}

// fakeAssertions verifies the assertions it was given, each for one peer.
type fakeAssertions map[string]struct {
	peer string
	a    token.Assertion
}

func (f fakeAssertions) Verify(raw, peerService string) (token.Assertion, error) {
	r, ok := f[raw]
	switch {
	case !ok:
		return token.Assertion{}, errors.New("malformed")
	case r.peer != peerService:
		return token.Assertion{}, fmt.Errorf("signed by %s, not by the calling %s", r.peer, peerService)
	}
	return r.a, nil
}

type limitCall struct {
	method string
	class  ratelimit.Class
	scope  string
}

// fakeLimiter records what it is asked and answers refuse.
type fakeLimiter struct {
	mu     sync.Mutex
	calls  []limitCall
	refuse bool
	wait   time.Duration
}

func (l *fakeLimiter) Allow(_ context.Context, method string, class ratelimit.Class, scope string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, limitCall{method, class, scope})
	if l.refuse {
		return false, l.wait
	}
	return true, 0
}

func (l *fakeLimiter) taken() []limitCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]limitCall(nil), l.calls...)
}

type env struct {
	az      *authz.Authorizer
	reg     *prometheus.Registry
	logs    *servicetest.Logs
	limiter *fakeLimiter
}

var (
	aliceClaims = token.Claims{Subject: "alice", Expires: time.Now().Add(time.Hour)}
	tokens      = fakeTokens{
		"alice-token":    {claims: aliceClaims},
		"bob-token":      {claims: token.Claims{Subject: "bob"}},
		"operator-token": {claims: token.Claims{Subject: "olga", Roles: []string{caller.RoleOperator}}},
		"admin-token":    {claims: token.Claims{Subject: "adam", Roles: []string{caller.RoleAdmin}}},
		"expired-token":  {err: fmt.Errorf("token: %w", token.ErrExpired)},
		"leaky-token":    {err: errors.New("jwx: could not parse leaky-token")},
	}
	assertions = fakeAssertions{
		"place-for-alice": {peer: "orchestrator", a: token.Assertion{User: "alice", Permissions: []string{"orders.place"}}},
		"read-for-alice":  {peer: "orchestrator", a: token.Assertion{User: "alice", Permissions: []string{"orders.read"}}},
		"place-for-adam":  {peer: "orchestrator", a: token.Assertion{User: "adam", Permissions: []string{"orders.place"}}},
	}
)

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{reg: prometheus.NewRegistry(), logs: &servicetest.Logs{}, limiter: &fakeLimiter{wait: 1500 * time.Millisecond}}
	logger := slog.New(slog.NewJSONHandler(e.logs, nil))
	az, err := authz.New(policies, authz.Config{Tokens: tokens, Assertions: assertions, Limiter: e.limiter}, e.reg, logger)
	require.NoError(t, err)
	e.az = az
	return e
}

// call runs a unary call of method through Authenticate and Authorize, and
// returns the identity the handler saw.
func (e *env) call(ctx context.Context, method string, req any) (caller.Identity, error) {
	info := &grpc.UnaryServerInfo{FullMethod: method}
	var got caller.Identity
	handled := false
	_, err := e.az.UnaryAuthenticate()(ctx, req, info, func(ctx context.Context, req any) (any, error) {
		return e.az.UnaryAuthorize()(ctx, req, info, func(ctx context.Context, _ any) (any, error) {
			handled = true
			got = caller.From(ctx)
			return "ok", nil
		})
	})
	if err == nil && !handled {
		return got, errors.New("the handler did not run")
	}
	if err != nil && handled {
		return got, fmt.Errorf("the handler ran for a refused call: %w", err)
	}
	return got, err
}

// refusals is auth_refusals_total{method,code,reason}.
func (e *env) refusals(t *testing.T, method string, code codes.Code, reason string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "auth_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["code"] == code.String() && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func (e *env) refusedLines() []string {
	var out []string
	for line := range strings.Lines(e.logs.String()) {
		if strings.Contains(line, `"msg":"call refused"`) {
			out = append(out, line)
		}
	}
	return out
}

// from returns a context of a call from addr whose connection presented
// service's certificate ("" for none), or a bad one (certErr).
func from(addr, service string, certErr error) context.Context {
	host, port, _ := net.SplitHostPort(addr)
	var p int
	_, _ = fmt.Sscan(port, &p)
	return peer.NewContext(context.Background(), &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.ParseIP(host), Port: p},
		AuthInfo: mtls.AuthInfo{Service: service, CertErr: certErr},
	})
}

func user() context.Context { return from("10.0.0.1:40000", "", nil) }

func svc(name string) context.Context { return from("10.0.1.1:40000", name, nil) }

func with(ctx context.Context, kv ...string) context.Context {
	return metadata.NewIncomingContext(ctx, metadata.Pairs(kv...))
}

func bearer(ctx context.Context, tok string) context.Context {
	return with(ctx, authz.BearerMetadataKey, "Bearer "+tok)
}

func onBehalf(ctx context.Context, a string) context.Context {
	return with(ctx, token.AssertionMetadataKey, a)
}

// orderRequest is a request message with a customer_id owner field.
var orderRequestDesc = func() protoreflect.MessageDescriptor {
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("authz_test/orders.proto"),
		Package: proto.String("test.v1"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("OrderRequest"),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("customer_id"), Number: proto.Int32(1), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), JsonName: proto.String("customerId")},
				{Name: proto.String("quantity"), Number: proto.Int32(2), Type: descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum(), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), JsonName: proto.String("quantity")},
			},
		}},
	}
	fd, err := protodesc.NewFile(fdp, nil)
	if err != nil {
		panic(err)
	}
	return fd.Messages().ByName("OrderRequest")
}()

func order(customer string) proto.Message {
	m := dynamicpb.NewMessage(orderRequestDesc)
	m.Set(orderRequestDesc.Fields().ByName("customer_id"), protoreflect.ValueOfString(customer))
	return m
}

func requireStatus(t *testing.T, err error, code codes.Code, msg string) {
	t.Helper()
	require.Error(t, err)
	st, ok := status.FromError(err)
	require.True(t, ok, "a status error: %v", err)
	require.Equal(t, code, st.Code(), "%v", err)
	require.Contains(t, st.Message(), msg)
}

func TestNoCredentials(t *testing.T) {
	e := newEnv(t)
	for name, ctx := range map[string]context.Context{
		"no peer":                   context.Background(),
		"peer without certificate":  user(),
		"empty metadata":            with(user()),
		"unrelated metadata":        with(user(), "x-user", "admin"),
		"user name in a plain text": with(user(), "x-goodgo-user", "alice", "x-goodgo-roles", "admin"),
	} {
		t.Run(name, func(t *testing.T) {
			id, err := e.call(ctx, mGet, order(""))
			requireStatus(t, err, codes.Unauthenticated, "credentials required: a bearer token (authorization: Bearer <token>) or a client certificate")
			require.True(t, id.IsZero())
		})
	}
	require.Equal(t, 5.0, e.refusals(t, mGet, codes.Unauthenticated, "no_credentials"))
}

func TestBadCertificate(t *testing.T) {
	e := newEnv(t)
	certErr := errors.New("certificate not trusted: x509: certificate signed by unknown authority")
	ctx := from("10.0.2.2:1234", "", certErr)
	_, err := e.call(ctx, mReserve, nil)
	requireStatus(t, err, codes.Unauthenticated, "client certificate: certificate not trusted: x509: certificate signed by unknown authority")

	// A valid bearer token does not make up for a bad certificate.
	_, err = e.call(bearer(ctx, "alice-token"), mGet, order("alice"))
	requireStatus(t, err, codes.Unauthenticated, "client certificate: certificate not trusted")
	require.Equal(t, 1.0, e.refusals(t, mReserve, codes.Unauthenticated, "bad_certificate"))
	require.Equal(t, 1.0, e.refusals(t, mGet, codes.Unauthenticated, "bad_certificate"))
}

func TestBadCredentials(t *testing.T) {
	tests := []struct {
		name   string
		ctx    context.Context
		msg    string
		reason string
	}{
		{"bearer and assertion", with(svc("orchestrator"), authz.BearerMetadataKey, "Bearer alice-token", token.AssertionMetadataKey, "place-for-alice"),
			"send either a bearer token or an on-behalf-of assertion, not both", "bad_credentials"},
		{"two bearer tokens", with(user(), authz.BearerMetadataKey, "Bearer alice-token", authz.BearerMetadataKey, "Bearer admin-token"),
			"credentials must be sent once", "bad_credentials"},
		{"two assertions", with(svc("orchestrator"), token.AssertionMetadataKey, "place-for-alice", token.AssertionMetadataKey, "place-for-adam"),
			"credentials must be sent once", "bad_credentials"},
		{"no scheme", with(user(), authz.BearerMetadataKey, "alice-token"), `authorization: must be "Bearer <token>"`, "bad_token"},
		{"basic scheme", with(user(), authz.BearerMetadataKey, "Basic YWxpY2U6cHc="), `must be "Bearer <token>"`, "bad_token"},
		{"scheme without token", with(user(), authz.BearerMetadataKey, "Bearer"), `must be "Bearer <token>"`, "bad_token"},
		{"scheme and blanks", with(user(), authz.BearerMetadataKey, "Bearer    "), `must be "Bearer <token>"`, "bad_token"},
		{"empty value", with(user(), authz.BearerMetadataKey, ""), `must be "Bearer <token>"`, "bad_token"},
		{"unknown token", bearer(user(), "forged"), "bearer token: signature not valid for the issuer's keys", "bad_token"},
		{"expired token", bearer(user(), "expired-token"), "bearer token: expired", "expired_token"},
		{"unclassified verifier error", bearer(user(), "leaky-token"), "bearer token: cannot be verified now", "bad_token"},
		{"assertion without certificate", onBehalf(user(), "place-for-alice"), "on-behalf-of assertion: only a service with a client certificate may act for a user", "bad_assertion"},
		{"assertion of another peer", onBehalf(svc("order"), "place-for-alice"), "on-behalf-of assertion: signed by orchestrator, not by the calling order", "bad_assertion"},
		{"garbage assertion", onBehalf(svc("orchestrator"), "garbage"), "on-behalf-of assertion: malformed", "bad_assertion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			_, err := e.call(tt.ctx, mPlace, order(""))
			requireStatus(t, err, codes.Unauthenticated, tt.msg)
			require.NotContains(t, err.Error(), "leaky-token", "the verifier's text is not echoed")
			require.Equal(t, 1.0, e.refusals(t, mPlace, codes.Unauthenticated, tt.reason))
			require.Empty(t, e.limiter.taken())
		})
	}
}

func TestNilVerifiers(t *testing.T) {
	az, err := authz.New(policies, authz.Config{}, prometheus.NewRegistry(), nil)
	require.NoError(t, err)
	e := &env{az: az}
	_, err = e.call(bearer(user(), "alice-token"), mGet, order(""))
	requireStatus(t, err, codes.Unauthenticated, "bearer tokens are not accepted by this service")
	_, err = e.call(onBehalf(svc("orchestrator"), "place-for-alice"), mPlace, order(""))
	requireStatus(t, err, codes.Unauthenticated, "on-behalf-of assertion: not accepted by this service")
	// Certificates alone still work, and no limiter limits nothing.
	id, err := e.call(svc("orchestrator"), mReserve, nil)
	require.NoError(t, err)
	require.Equal(t, "orchestrator", id.Service)
	_, err = e.call(bearer(user(), "alice-token"), mPing, nil)
	require.NoError(t, err)
}

func TestUsers(t *testing.T) {
	e := newEnv(t)
	id, err := e.call(bearer(user(), "alice-token"), mGet, order("alice"))
	require.NoError(t, err)
	require.Equal(t, caller.Identity{User: "alice"}, id)

	// The scheme is case-insensitive and blanks around the token are
	// tolerated.
	id, err = e.call(with(user(), authz.BearerMetadataKey, "bearer   alice-token "), mGet, order("alice"))
	require.NoError(t, err)
	require.Equal(t, "alice", id.User)

	// A service is not a user.
	_, err = e.call(svc("orchestrator"), mGet, order(""))
	requireStatus(t, err, codes.PermissionDenied, "allowed only for signed-in users")
	require.Equal(t, 1.0, e.refusals(t, mGet, codes.PermissionDenied, "not_allowed"))
}

// TestRolesAndOwnerField calls methods whose policies allow users by role
// (Policy.Roles) or by the owner field of the request (Policy.OwnerField).
func TestRolesAndOwnerField(t *testing.T) {
	const notYours = "customer_id: must be your own user id"
	tests := []struct {
		name   string
		ctx    context.Context
		method string
		req    any
		roles  []string // allowed: the roles the handler sees
		want   string   // "" allowed, else the PermissionDenied message
		reason string   // refused: the reason counted
	}{
		{"operator lists", bearer(user(), "operator-token"), mList, nil, []string{caller.RoleOperator}, "", ""},
		{"admin implies operator", bearer(user(), "admin-token"), mList, nil, []string{caller.RoleAdmin}, "", ""},
		{"admin purges", bearer(user(), "admin-token"), mPurge, nil, []string{caller.RoleAdmin}, "", ""},
		{"operator does not purge", bearer(user(), "operator-token"), mPurge, nil, nil, "allowed only for users with the admin role", "not_allowed"},
		{"user does not list", bearer(user(), "alice-token"), mList, nil, nil, "allowed only for users with the operator role", "not_allowed"},
		{"a delegated admin has no roles", onBehalf(svc("orchestrator"), "place-for-adam"), mPurge, nil, nil, "allowed only for users with the admin role", "not_allowed"},
		{"a delegated admin does not list", onBehalf(svc("orchestrator"), "place-for-adam"), mList, nil, nil, "allowed only for users with the operator role", "not_allowed"},
		{"a service has no roles", svc("orchestrator"), mList, nil, nil, "allowed only for users with the operator role", "not_allowed"},

		{"own id", bearer(user(), "alice-token"), mGet, order("alice"), nil, "", ""},
		{"empty field is the handler's to validate", bearer(user(), "alice-token"), mGet, order(""), nil, "", ""},
		{"someone else's id", bearer(user(), "alice-token"), mGet, order("bob"), nil, notYours + " (the subject of your token)", "not_owner"},
		{"prefix of the own id", bearer(user(), "alice-token"), mGet, order("alic"), nil, notYours, "not_owner"},
		{"own id with a suffix", bearer(user(), "alice-token"), mGet, order("alice "), nil, notYours, "not_owner"},
		// Policy.OwnerField: "whatever their roles: nobody acts as someone
		// else by naming them".
		{"an operator names only themself", bearer(user(), "operator-token"), mGet, order("bob"), nil, notYours, "not_owner"},
		{"an admin names only themself", bearer(user(), "admin-token"), mGet, order("bob"), nil, notYours, "not_owner"},
		{"an operator's own id", bearer(user(), "operator-token"), mGet, order("olga"), []string{caller.RoleOperator}, "", ""},
		{"not a protobuf request", bearer(user(), "alice-token"), mGet, "customer_id=bob", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			id, err := e.call(tt.ctx, tt.method, tt.req)
			if tt.want == "" {
				require.NoError(t, err)
				require.Equal(t, tt.roles, id.Roles)
				return
			}
			requireStatus(t, err, codes.PermissionDenied, tt.want)
			require.Equal(t, 1.0, e.refusals(t, tt.method, codes.PermissionDenied, tt.reason))
			require.Empty(t, e.limiter.taken(), "a refused call takes no rate-limit token")
		})
	}
}

func TestServices(t *testing.T) {
	e := newEnv(t)
	id, err := e.call(svc("orchestrator"), mReserve, nil)
	require.NoError(t, err)
	require.Equal(t, caller.Identity{Service: "orchestrator"}, id)
	id, err = e.call(svc("order"), mReserve, nil)
	require.NoError(t, err)
	require.Equal(t, "order", id.Service)

	_, err = e.call(svc("inventory"), mReserve, nil)
	requireStatus(t, err, codes.PermissionDenied, "allowed only for the orchestrator or order service")
	_, err = e.call(bearer(user(), "admin-token"), mReserve, nil)
	requireStatus(t, err, codes.PermissionDenied, "allowed only for the orchestrator or order service")
}

func TestOnBehalfOf(t *testing.T) {
	e := newEnv(t)
	_, err := e.call(svc("orchestrator"), mPlace, order(""))
	requireStatus(t, err, codes.PermissionDenied, "the orchestrator service must act for a user here (on-behalf-of assertion)")

	_, err = e.call(onBehalf(svc("orchestrator"), "read-for-alice"), mPlace, order(""))
	requireStatus(t, err, codes.PermissionDenied, "the on-behalf-of assertion does not grant orders.place")

	id, err := e.call(onBehalf(svc("orchestrator"), "place-for-alice"), mPlace, order("alice"))
	require.NoError(t, err)
	require.Equal(t, caller.Identity{Service: "orchestrator", User: "alice", Delegated: true, Permissions: []string{"orders.place"}}, id)

	// The owner field is an end user's check: the service acting for a
	// user is trusted with the request's contents.
	id, err = e.call(onBehalf(svc("orchestrator"), "place-for-alice"), mPlace, order("bob"))
	require.NoError(t, err)
	require.Equal(t, "alice", id.User)

	// The user placing their own order needs no assertion.
	id, err = e.call(bearer(user(), "alice-token"), mPlace, order("alice"))
	require.NoError(t, err)
	require.Equal(t, caller.Identity{User: "alice"}, id)
	require.Equal(t, 2.0, e.refusals(t, mPlace, codes.PermissionDenied, "not_allowed"))
}

func TestNoPolicy(t *testing.T) {
	e := newEnv(t)
	for _, ctx := range []context.Context{user(), bearer(user(), "admin-token"), svc("orchestrator")} {
		_, err := e.call(ctx, mNone, nil)
		requireStatus(t, err, codes.PermissionDenied, "no policy allows this method")
	}
	require.Equal(t, 3.0, e.refusals(t, mNone, codes.PermissionDenied, "no_policy"))
	_, ok := e.az.Policy(mNone)
	require.False(t, ok)
}

func TestPublic(t *testing.T) {
	e := newEnv(t)
	for name, ctx := range map[string]context.Context{
		"no credentials":  user(),
		"bad certificate": from("10.0.3.3:1", "", errors.New("certificate not trusted")),
		"malformed token": with(user(), authz.BearerMetadataKey, "token"),
		"expired token":   bearer(user(), "expired-token"),
		"both":            with(svc("orchestrator"), authz.BearerMetadataKey, "Bearer alice-token", token.AssertionMetadataKey, "x"),
	} {
		t.Run(name, func(t *testing.T) {
			for _, m := range []string{mPing, mHealth, "/grpc.health.v1.Health/Watch", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"} {
				_, err := e.call(ctx, m, nil)
				require.NoError(t, err, m)
			}
		})
	}
	id, err := e.call(bearer(user(), "alice-token"), mPing, nil)
	require.NoError(t, err)
	require.Equal(t, "alice", id.User, "valid credentials still name the caller")
	require.Empty(t, e.limiter.taken())
	require.Empty(t, e.refusedLines())
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t)
	e.limiter.refuse = true
	_, err := e.call(bearer(user(), "alice-token"), mPlace, order("alice"))
	requireStatus(t, err, codes.ResourceExhausted, "rate limit of write calls exceeded; retry after 1.5s")
	st := status.Convert(err)
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	require.NotNil(t, retry, "a RetryInfo detail")
	require.Equal(t, 1500*time.Millisecond, retry.GetRetryDelay().AsDuration())
	require.Equal(t, []limitCall{{mPlace, ratelimit.Write, "user:alice"}}, e.limiter.taken())

	e.limiter.refuse = false
	_, err = e.call(bearer(user(), "bob-token"), mGet, order("bob"))
	require.NoError(t, err)
	require.Equal(t, limitCall{mGet, ratelimit.Read, "user:bob"}, e.limiter.taken()[1])
}

func TestRateLimitOnlyForEndUsers(t *testing.T) {
	e := newEnv(t)
	e.limiter.refuse = true
	// A service, limited class: not limited.
	_, err := e.call(svc("orchestrator"), mReserve, nil)
	require.NoError(t, err)
	// A service acting for a user: not limited.
	_, err = e.call(onBehalf(svc("orchestrator"), "place-for-alice"), mPlace, order("alice"))
	require.NoError(t, err)
	// A user on a method without a class: not limited.
	_, err = e.call(bearer(user(), "operator-token"), mList, nil)
	require.NoError(t, err)
	// A user refused by policy: the limiter is not asked.
	_, err = e.call(bearer(user(), "alice-token"), mList, nil)
	requireStatus(t, err, codes.PermissionDenied, "operator")
	require.Empty(t, e.limiter.taken())

	// A user on a limited method: asked once.
	_, err = e.call(bearer(user(), "alice-token"), mGet, order("alice"))
	requireStatus(t, err, codes.ResourceExhausted, "read")
	require.Len(t, e.limiter.taken(), 1)
}

// A user's own bearer token sent over a connection with a service's
// certificate (a gateway forwarding its users' tokens, say) is an end-user
// call, limited per end user: not one bucket for every user behind that
// service.
func TestRateLimitScopeOfUserTokenOverServiceCertificate(t *testing.T) {
	e := newEnv(t)
	_, err := e.call(bearer(svc("gateway"), "alice-token"), mGet, order("alice"))
	require.NoError(t, err)
	_, err = e.call(bearer(svc("gateway"), "bob-token"), mGet, order("bob"))
	require.NoError(t, err)
	require.Equal(t, []limitCall{{mGet, ratelimit.Read, "user:alice"}, {mGet, ratelimit.Read, "user:bob"}}, e.limiter.taken())
}

func TestRefusalsLoggedOncePerCallerAndReason(t *testing.T) {
	e := newEnv(t)
	for range 5 {
		_, err := e.call(bearer(from("10.9.9.9:1000", "", nil), "forged"), mGet, order(""))
		requireStatus(t, err, codes.Unauthenticated, "signature")
	}
	lines := e.refusedLines()
	require.Len(t, lines, 1, "5 identical refusals, one line:\n%s", e.logs.String())
	for _, want := range []string{`"level":"WARN"`, `"method":"` + mGet + `"`, `"code":"Unauthenticated"`, `"reason":"bad_token"`, `"caller":"anonymous@10.9.9.9"`, `"detail":"bearer token: signature not valid for the issuer's keys"`} {
		require.Contains(t, lines[0], want)
	}
	require.Equal(t, 5.0, e.refusals(t, mGet, codes.Unauthenticated, "bad_token"), "every refusal is counted")

	// The same client from another port is the same caller.
	_, err := e.call(bearer(from("10.9.9.9:2000", "", nil), "forged"), mGet, order(""))
	require.Error(t, err)
	require.Len(t, e.refusedLines(), 1)

	// Another reason, another host, another caller: one line each.
	_, err = e.call(bearer(from("10.9.9.9:1000", "", nil), "expired-token"), mGet, order(""))
	require.Error(t, err)
	_, err = e.call(bearer(from("10.8.8.8:1000", "", nil), "forged"), mGet, order(""))
	require.Error(t, err)
	for range 3 {
		_, err = e.call(bearer(from("10.9.9.9:1000", "", nil), "alice-token"), mList, nil)
		require.Error(t, err)
	}
	lines = e.refusedLines()
	require.Len(t, lines, 4, e.logs.String())
	require.Contains(t, lines[3], `"caller":"alice@10.9.9.9"`)
	require.Contains(t, lines[3], `"reason":"not_allowed"`)
}

func TestNew(t *testing.T) {
	_, err := authz.New(authz.Policies{"/svc/M": {OnBehalfOf: "x"}}, authz.Config{}, prometheus.NewRegistry(), nil)
	require.ErrorContains(t, err, "/svc/M: OnBehalfOf without Services")
	_, err = authz.New(policies, authz.Config{}, nil, nil)
	require.Error(t, err)

	// Two Authorizers on one registry (two servers of one binary) share
	// the counter.
	reg := prometheus.NewRegistry()
	a1, err := authz.New(policies, authz.Config{}, reg, nil)
	require.NoError(t, err)
	a2, err := authz.New(policies, authz.Config{}, reg, nil)
	require.NoError(t, err)
	e1, e2 := &env{az: a1, reg: reg}, &env{az: a2, reg: reg}
	_, err = e1.call(user(), mGet, nil)
	require.Error(t, err)
	_, err = e2.call(user(), mGet, nil)
	require.Error(t, err)
	require.Equal(t, 2.0, e1.refusals(t, mGet, codes.Unauthenticated, "no_credentials"))

	// Declared and built-in policies are reported.
	p, ok := a1.Policy(mPurge)
	require.True(t, ok)
	require.Equal(t, []string{caller.RoleAdmin}, p.Roles)
	p, ok = a1.Policy(mHealth)
	require.True(t, ok)
	require.True(t, p.Public)
}

// testService is a hand-written service: two unary methods and a stream.
var testService = grpc.ServiceDesc{
	ServiceName: "test.v1.Orders",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "GetOrder", Handler: func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) { return nil, nil }},
		{MethodName: "Undeclared", Handler: func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) { return nil, nil }},
		{MethodName: "AlsoUndeclared", Handler: func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) { return nil, nil }},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "WatchOrders", ServerStreams: true, Handler: func(any, grpc.ServerStream) error { return nil }},
	},
}

func TestCheck(t *testing.T) {
	e := newEnv(t)
	srv := grpc.NewServer()
	srv.RegisterService(&testService, struct{}{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	err := e.az.Check(srv.GetServiceInfo())
	require.EqualError(t, err, "authz: /test.v1.Orders/GetOrder: OwnerField customer_id is not a string field of the request; "+
		"no policy for /test.v1.Orders/AlsoUndeclared; no policy for /test.v1.Orders/Undeclared; no policy for /test.v1.Orders/WatchOrders",
		"the hand-written service has no protobuf descriptor, so its owner field cannot be found")

	full := authz.Policies{}
	for m, p := range policies {
		full[m] = p
	}
	full[mGet] = authz.Policy{Users: true}
	full["/test.v1.Orders/Undeclared"] = authz.Policy{Users: true}
	full["/test.v1.Orders/AlsoUndeclared"] = authz.Policy{}
	full["/test.v1.Orders/WatchOrders"] = authz.Policy{Users: true}
	az, err := authz.New(full, authz.Config{}, prometheus.NewRegistry(), nil)
	require.NoError(t, err)
	require.NoError(t, az.Check(srv.GetServiceInfo()), "every method declared; health is built in")
	require.NoError(t, az.Check(nil))

	// An owner field is looked up in the request's descriptor.
	for field, ok := range map[string]bool{"service": true, "servcie": false} {
		withOwner := authz.Policies{"/grpc.health.v1.Health/Check": {Users: true, OwnerField: field}}
		az, err := authz.New(withOwner, authz.Config{}, prometheus.NewRegistry(), nil)
		require.NoError(t, err)
		err = az.Check(map[string]grpc.ServiceInfo{"grpc.health.v1.Health": {Methods: []grpc.MethodInfo{{Name: "Check"}}}})
		if ok {
			require.NoError(t, err, field)
		} else {
			require.ErrorContains(t, err, "OwnerField servcie is not a string field of the request")
		}
	}
}

type fakeStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s fakeStream) Context() context.Context { return s.ctx }

func TestStreamInterceptors(t *testing.T) {
	e := newEnv(t)
	run := func(ctx context.Context, method string) (caller.Identity, error) {
		info := &grpc.StreamServerInfo{FullMethod: method}
		var got caller.Identity
		err := e.az.StreamAuthenticate()(nil, fakeStream{ctx: ctx}, info, func(srv any, ss grpc.ServerStream) error {
			return e.az.StreamAuthorize()(srv, ss, info, func(_ any, ss grpc.ServerStream) error {
				got = caller.From(ss.Context())
				return nil
			})
		})
		return got, err
	}
	id, err := run(bearer(user(), "alice-token"), mGet)
	require.NoError(t, err, "the owner field is not read from a stream")
	require.Equal(t, "alice", id.User)
	_, err = run(user(), mGet)
	requireStatus(t, err, codes.Unauthenticated, "credentials required")
	_, err = run(bearer(user(), "expired-token"), mGet)
	requireStatus(t, err, codes.Unauthenticated, "bearer token: expired")
	_, err = run(svc("inventory"), mReserve)
	requireStatus(t, err, codes.PermissionDenied, "allowed only for the orchestrator or order service")
	e.limiter.refuse = true
	_, err = run(bearer(user(), "alice-token"), mGet)
	requireStatus(t, err, codes.ResourceExhausted, "rate limit")
}

// The interceptors are safe for concurrent use (run with -race).
func TestConcurrentCalls(t *testing.T) {
	e := newEnv(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 20 {
				ctx := bearer(from(fmt.Sprintf("10.1.%d.%d:1", i, j), "", nil), "forged")
				_, err := e.call(ctx, mGet, order(""))
				if status.Code(err) != codes.Unauthenticated {
					panic(err)
				}
			}
		})
	}
	wg.Wait()
	require.Equal(t, 320.0, e.refusals(t, mGet, codes.Unauthenticated, "bad_token"))
	require.Len(t, e.refusedLines(), 320, "320 distinct callers")
}
