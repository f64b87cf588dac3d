// Package authz decides who may call what, for every GoodGo gRPC server,
// in two interceptors:
//
//   - Authenticate (outermost after metrics) turns verified credentials
//     into the caller's identity (platform/caller): the peer's mTLS
//     certificate (a service), a bearer token (an end user, with roles), or
//     a service's certificate plus its on-behalf-of assertion (a service
//     acting for a user). Nothing else — no plain header — names a caller.
//   - Authorize applies the RPC's one declared Policy, deny by default: a
//     method without a policy is refused, and Check refuses to build a
//     server that registers one. Then it applies the policy's rate limit.
//
// Refusals are Unauthenticated (no or bad credentials: what is missing or
// wrong is said) or PermissionDenied (who the RPC is for is said), counted
// in auth_refusals_total{method,code,reason}, and logged once per caller
// and reason per minute, so that a flood of bad calls cannot flood the logs.
package authz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/ratelimit"
	"github.com/goodgo/goodgo/platform/telemetry"
	"github.com/goodgo/goodgo/platform/token"
)

// Limiter is the rate limiter a policy's Limit class is checked against
// (ratelimit.Limiter).
type Limiter interface {
	Allow(ctx context.Context, method string, class ratelimit.Class, scope string) (ok bool, retryAfter time.Duration)
}

// TokenVerifier verifies end users' bearer tokens (token.Verifier).
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (token.Claims, error)
}

// AssertionVerifier verifies services' on-behalf-of assertions
// (token.AssertionVerifier).
type AssertionVerifier interface {
	Verify(raw, peerService string) (token.Assertion, error)
}

// Config holds the verifiers. A nil Tokens refuses every bearer token, a
// nil Assertions every assertion, a nil Limiter limits nothing.
type Config struct {
	Tokens     TokenVerifier
	Assertions AssertionVerifier
	Limiter    Limiter
}

// BearerMetadataKey is the metadata entry of a bearer token:
// "authorization: Bearer <jwt>".
const BearerMetadataKey = "authorization"

// logWindow is how long a refusal of one caller for one reason is not
// logged again.
const logWindow = time.Minute

// Authorizer authenticates callers and applies the policies. Safe for
// concurrent use.
type Authorizer struct {
	cfg      Config
	policies Policies
	logger   *slog.Logger
	refusals *prometheus.CounterVec
	now      func() time.Time

	mu     sync.Mutex
	logged map[string]time.Time
}

// New returns an Authorizer for policies (the built-in health and
// reflection policies are added). It registers auth_refusals_total on reg.
func New(policies Policies, cfg Config, reg prometheus.Registerer, logger *slog.Logger) (*Authorizer, error) {
	if reg == nil {
		return nil, errors.New("authz: nil prometheus.Registerer")
	}
	logger = logs.OrDiscard(logger)
	all := Policies{}
	for m, p := range builtin {
		all[m] = p
	}
	for m, p := range policies {
		if err := p.validate(m); err != nil {
			return nil, err
		}
		all[m] = p
	}
	a := &Authorizer{
		cfg: cfg, policies: all, logger: logger, now: time.Now, logged: map[string]time.Time{},
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "auth_refusals_total",
			Help: "Calls refused for missing or bad credentials (Unauthenticated) or by policy (PermissionDenied).",
		}, []string{"method", "code", "reason"}),
	}
	var err error
	if a.refusals, err = telemetry.Register(reg, "authz", a.refusals); err != nil {
		return nil, err
	}
	return a, nil
}

// Check returns an error naming every registered method (services as
// grpc.Server.GetServiceInfo reports them) that has no policy — such a
// method would refuse every call, so a server is not built with one — or
// whose policy's OwnerField is not a string field of its request (a typo
// would silently skip the owner check).
func (a *Authorizer) Check(services map[string]grpc.ServiceInfo) error {
	var problems []string
	for name, info := range services {
		for _, m := range info.Methods {
			full := "/" + name + "/" + m.Name
			p, ok := a.policies[full]
			switch {
			case !ok:
				problems = append(problems, "no policy for "+full)
			case p.OwnerField != "" && !hasStringField(name+"."+m.Name, p.OwnerField):
				problems = append(problems, full+": OwnerField "+p.OwnerField+" is not a string field of the request")
			}
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("authz: %s", strings.Join(problems, "; "))
	}
	return nil
}

// hasStringField reports whether the request of method (its full protobuf
// name, "pkg.Service.Method") has a singular string field named field.
func hasStringField(method, field string) bool {
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(method))
	if err != nil {
		return false
	}
	md, ok := d.(protoreflect.MethodDescriptor)
	if !ok {
		return false
	}
	fd := md.Input().Fields().ByName(protoreflect.Name(field))
	return fd != nil && fd.Kind() == protoreflect.StringKind && !fd.IsList()
}

// authResult is what Authenticate leaves for Authorize.
type authResult struct {
	refusal *refusal
}

type resultKey struct{}

type refusal struct {
	reason string // metric label
	msg    string // for the caller
	cause  error  // for the log only
}

// UnaryAuthenticate returns the interceptor that establishes the caller.
func (a *Authorizer) UnaryAuthenticate() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		return handler(a.authenticate(ctx), req)
	}
}

// StreamAuthenticate is UnaryAuthenticate for streams.
func (a *Authorizer) StreamAuthenticate() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return handler(srv, &wrappedStream{ServerStream: ss, ctx: a.authenticate(ss.Context())})
	}
}

// UnaryAuthorize returns the interceptor that applies the method's policy
// and rate limit; it must run inside UnaryAuthenticate.
func (a *Authorizer) UnaryAuthorize() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if err := a.authorize(ctx, info.FullMethod, req); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// StreamAuthorize is UnaryAuthorize for streams (no owner field check:
// the request is not read yet).
func (a *Authorizer) StreamAuthorize() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if err := a.authorize(ss.Context(), info.FullMethod, nil); err != nil {
			return err
		}
		return handler(srv, ss)
	}
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

// authenticate puts the verified identity into ctx, or, when credentials
// were presented and are bad, the refusal for Authorize to return.
func (a *Authorizer) authenticate(ctx context.Context) context.Context {
	id, ref := a.identify(ctx)
	ctx = context.WithValue(ctx, resultKey{}, authResult{refusal: ref})
	if ref == nil {
		ctx = caller.With(ctx, id)
	}
	return ctx
}

func (a *Authorizer) identify(ctx context.Context) (caller.Identity, *refusal) {
	var id caller.Identity
	if p, ok := mtls.PeerFrom(ctx); ok {
		if p.CertErr != nil {
			return id, &refusal{"bad_certificate", "client certificate: " + p.CertErr.Error(), p.CertErr}
		}
		id.Service = p.Service
	}
	// The two entries' values, not a copy of every entry (FromIncomingContext).
	bearer := metadata.ValueFromIncomingContext(ctx, BearerMetadataKey)
	assertion := metadata.ValueFromIncomingContext(ctx, token.AssertionMetadataKey)
	switch {
	case len(bearer) > 0 && len(assertion) > 0:
		return id, &refusal{"bad_credentials", "send either a bearer token or an on-behalf-of assertion, not both", nil}
	case len(bearer) > 1 || len(assertion) > 1:
		return id, &refusal{"bad_credentials", "credentials must be sent once", nil}
	case len(bearer) == 1:
		raw, ok := cutBearer(bearer[0])
		if !ok {
			return id, &refusal{"bad_token", BearerMetadataKey + ": must be \"Bearer <token>\"", nil}
		}
		if a.cfg.Tokens == nil {
			return id, &refusal{"bad_token", "bearer tokens are not accepted by this service", nil}
		}
		claims, err := a.cfg.Tokens.Verify(ctx, raw)
		if err != nil {
			reason := "bad_token"
			if errors.Is(err, token.ErrExpired) {
				reason = "expired_token"
			}
			return id, &refusal{reason, "bearer token: " + tokenProblem(err), err}
		}
		id.User, id.Roles = claims.Subject, claims.Roles
	case len(assertion) == 1:
		if id.Service == "" {
			return id, &refusal{"bad_assertion", "on-behalf-of assertion: only a service with a client certificate may act for a user", nil}
		}
		if a.cfg.Assertions == nil {
			return id, &refusal{"bad_assertion", "on-behalf-of assertion: not accepted by this service", nil}
		}
		as, err := a.cfg.Assertions.Verify(assertion[0], id.Service)
		if err != nil {
			return id, &refusal{"bad_assertion", "on-behalf-of assertion: " + err.Error(), err}
		}
		id.User, id.Delegated, id.Permissions = as.User, true, as.Permissions
	}
	return id, nil
}

// tokenProblem is the caller's view of a token error: the reason, never
// the library's text (which could echo the token).
func tokenProblem(err error) string {
	for _, reason := range []error{token.ErrExpired, token.ErrSignature, token.ErrIssuer, token.ErrAudience, token.ErrClaims, token.ErrMalformed} {
		if errors.Is(err, reason) {
			return reason.Error()
		}
	}
	return "cannot be verified now"
}

func cutBearer(v string) (string, bool) {
	scheme, raw, ok := strings.Cut(v, " ")
	return strings.TrimSpace(raw), ok && strings.EqualFold(scheme, "bearer") && strings.TrimSpace(raw) != ""
}

// authorize applies method's policy to the identity Authenticate found.
func (a *Authorizer) authorize(ctx context.Context, method string, req any) error {
	p, ok := a.policies[method]
	if !ok {
		a.logger.ErrorContext(ctx, "authz: method has no policy; refused", "method", method)
		return a.refuse(ctx, method, codes.PermissionDenied, "no_policy", "no policy allows this method", nil)
	}
	res, _ := ctx.Value(resultKey{}).(authResult)
	if p.Public {
		return nil
	}
	if res.refusal != nil {
		return a.refuse(ctx, method, codes.Unauthenticated, res.refusal.reason, res.refusal.msg, res.refusal.cause)
	}
	id := caller.From(ctx)
	if id.IsZero() {
		return a.refuse(ctx, method, codes.Unauthenticated, "no_credentials",
			"credentials required: a bearer token (authorization: Bearer <token>) or a client certificate", nil)
	}
	if why := p.decide(id); why != "" {
		return a.refuse(ctx, method, codes.PermissionDenied, "not_allowed", why, nil)
	}
	if p.OwnerField != "" && id.EndUser() != "" {
		if v, ok := stringField(req, p.OwnerField); ok && v != "" && v != id.EndUser() {
			return a.refuse(ctx, method, codes.PermissionDenied, "not_owner",
				p.OwnerField+": must be your own user id (the subject of your token)", nil)
		}
	}
	if a.cfg.Limiter != nil && p.Limit != ratelimit.None && id.EndUser() != "" {
		if ok, wait := a.cfg.Limiter.Allow(ctx, method, p.Limit, id.Scope()); !ok {
			return resourceExhausted(p.Limit, wait)
		}
	}
	return nil
}

// resourceExhausted tells the caller when to come back, in the message and
// as RetryInfo.
func resourceExhausted(class ratelimit.Class, wait time.Duration) error {
	st := status.Newf(codes.ResourceExhausted, "rate limit of %s calls exceeded; retry after %s", class, wait.Round(time.Millisecond))
	if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
		st = d
	}
	return st.Err()
}

// refuse counts and (once per caller, reason and window) logs a refusal,
// with its cause when there is one, and returns its status.
func (a *Authorizer) refuse(ctx context.Context, method string, code codes.Code, reason, msg string, cause error) error {
	a.refusals.WithLabelValues(method, code.String(), reason).Inc()
	who := caller.From(ctx).String()
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			who += "@" + host
		}
	}
	if a.firstInWindow(who + "|" + reason) {
		attrs := []any{"method", method, "code", code.String(), "reason", reason, "caller", who, "detail", msg}
		if cause != nil {
			attrs = append(attrs, "cause", cause.Error())
		}
		a.logger.WarnContext(ctx, "call refused", attrs...)
	}
	return status.Error(code, msg)
}

func (a *Authorizer) firstInWindow(key string) bool {
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if last, ok := a.logged[key]; ok && now.Sub(last) < logWindow {
		return false
	}
	if len(a.logged) >= 10000 { // many distinct callers: start a new window for all
		clear(a.logged)
	}
	a.logged[key] = now
	return true
}

// stringField reads the string field name of a protobuf request.
func stringField(req any, name string) (string, bool) {
	m, ok := req.(proto.Message)
	if !ok {
		return "", false
	}
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() {
		return "", false
	}
	return r.Get(fd).String(), true
}
