package idempotency

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/logs"
)

// Policy is the idempotency policy of one guarded RPC.
type Policy struct {
	// RedisDownSafe lets the RPC run unguarded when the store fails, because
	// its own database constraint already rejects a duplicate. Leave it false
	// unless that constraint exists; the call then fails with Unavailable.
	// For the same reason a RedisDownSafe handler is not cancelled when its
	// claim is lost while it runs (see Options.LockTTL).
	RedisDownSafe bool
	// Sensitive marks an RPC whose stored outcome holds what a user should
	// not find replayable after signing out (an address, say): an end
	// user's keys of such RPCs are tracked, and Guard.Forget deletes them.
	Sensitive bool
}

// Options tunes a Guard; zero fields take the defaults.
type Options struct {
	// TTL is how long a completed outcome is replayed. Default 24 h.
	TTL time.Duration
	// LockTTL is the lease of an in-progress claim. The Guard renews it
	// every LockTTL/3 while the handler runs and until its outcome is
	// stored, so a live holder keeps its key however long it runs, and
	// the claim of a holder that died (kill -9, a lost node) expires at
	// most LockTTL after its last renewal: the caller's retry then runs.
	// When no renewal has succeeded for 2/3 of LockTTL (the store is
	// unreachable) or a renewal finds the claim gone, the claim is lost:
	// the handler's context is cancelled, leaving it the last third to
	// stop before a retry can claim the key, unless its Policy is
	// RedisDownSafe. At least 30 ms. Default 5 s.
	LockTTL time.Duration
	// HandlerTimeout bounds a guarded handler's run: its context ends then,
	// whatever the client's deadline. Default 1 min.
	HandlerTimeout time.Duration
	// StoreTimeout bounds storing the outcome once the handler returned; it
	// runs detached from the request's context so that a client hanging up
	// does not leave the key claimed. Default 2 s.
	StoreTimeout time.Duration
}

// Default option values.
const (
	DefaultTTL            = 24 * time.Hour
	DefaultLockTTL        = 5 * time.Second
	DefaultHandlerTimeout = time.Minute
	DefaultStoreTimeout   = 2 * time.Second
)

// MinLockTTL is the shortest LockTTL: the lease is renewed every third of
// it, and Redis expiries have millisecond resolution.
const MinLockTTL = 30 * time.Millisecond

// Status messages of the Guard, fixed so that clients and tests can rely on them.
const (
	msgMismatch    = "idempotency-key was already used with a different request"
	msgInProgress  = "a request with this idempotency-key is in progress; retry later"
	msgUnavailable = "idempotency store unavailable"
	msgLeaseLost   = "idempotency claim lost before the request finished; retry"
)

// Guard enforces idempotency on the RPCs of its policy map; see the package
// documentation for the semantics. It is safe for concurrent use.
type Guard struct {
	store   Store
	opts    Options
	logger  *slog.Logger
	methods map[string]*method
	// redisErrors counts failed store operations of every method.
	redisErrors prometheus.Counter
}

// method is one guarded RPC with its metric series resolved once.
type method struct {
	name                 string
	policy               Policy
	checks, hits         prometheus.Counter
	inProgress, mismatch prometheus.Counter
	// leasesLost counts claims lost while the handler ran.
	leasesLost prometheus.Counter
}

// New returns a Guard over store for the methods in policies, keyed by full
// gRPC method name ("/goodgo.order.v1.OrderService/PlaceOrder"). It
// registers the idempotency_* metrics on reg. A nil logger discards logs.
func New(store Store, policies map[string]Policy, opts Options, reg prometheus.Registerer, logger *slog.Logger) (*Guard, error) {
	if store == nil || reg == nil {
		return nil, errors.New("idempotency: store and registerer are required")
	}
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.LockTTL == 0 {
		opts.LockTTL = DefaultLockTTL
	}
	if opts.HandlerTimeout == 0 {
		opts.HandlerTimeout = DefaultHandlerTimeout
	}
	if opts.StoreTimeout == 0 {
		opts.StoreTimeout = DefaultStoreTimeout
	}
	// Redis expiries have millisecond resolution; less would expire at once.
	if opts.TTL < time.Millisecond || opts.HandlerTimeout < time.Millisecond || opts.StoreTimeout < time.Millisecond {
		return nil, fmt.Errorf("idempotency: TTL %v, HandlerTimeout %v and StoreTimeout %v must be at least 1ms",
			opts.TTL, opts.HandlerTimeout, opts.StoreTimeout)
	}
	if opts.LockTTL < MinLockTTL {
		return nil, fmt.Errorf("idempotency: LockTTL %v must be at least %v: the lease is renewed every third of it",
			opts.LockTTL, MinLockTTL)
	}
	logger = logs.OrDiscard(logger)

	checks := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "idempotency_checks_total",
		Help: "Guarded calls checked against the idempotency store.",
	}, []string{"method"})
	hits := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "idempotency_hits_total",
		Help: "Duplicate calls answered with the stored outcome instead of running again.",
	}, []string{"method"})
	conflicts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "idempotency_conflicts_total",
		Help: "Duplicate calls rejected: still in progress, or the key reused with a different request.",
	}, []string{"method", "reason"})
	redisErrors := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "idempotency_redis_errors_total",
		Help: "Failed idempotency store operations.",
	})
	ttl := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "idempotency_key_ttl_seconds",
		Help: "TTL given to completed idempotency keys (every key gets the configured TTL).",
	})
	leasesLost := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "idempotency_leases_lost_total",
		Help: "In-progress claims lost while their handler ran: a renewal found the claim gone, or none succeeded in time.",
	}, []string{"method"})
	ttl.Set(opts.TTL.Seconds())
	for _, c := range []prometheus.Collector{checks, hits, conflicts, redisErrors, ttl, leasesLost} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("idempotency: register metrics: %w", err)
		}
	}

	g := &Guard{
		store:       store,
		opts:        opts,
		logger:      logger,
		methods:     make(map[string]*method, len(policies)),
		redisErrors: redisErrors,
	}
	for name, p := range policies {
		if !strings.HasPrefix(name, "/") || strings.Count(name, "/") != 2 {
			return nil, fmt.Errorf("idempotency: %q is not a full method name like /pkg.Service/Method", name)
		}
		// Resolving every series now also exports them at zero from the start.
		g.methods[name] = &method{
			name:       name,
			policy:     p,
			checks:     checks.WithLabelValues(name),
			hits:       hits.WithLabelValues(name),
			inProgress: conflicts.WithLabelValues(name, "in_progress"),
			mismatch:   conflicts.WithLabelValues(name, "fingerprint_mismatch"),
			leasesLost: leasesLost.WithLabelValues(name),
		}
	}
	return g, nil
}

// UnaryServerInterceptor returns the interceptor enforcing the Guard. It must
// run after the interceptor that establishes the caller identity; methods
// without a policy pass through untouched.
func (g *Guard) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return g.intercept
}

func (g *Guard) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	m, guarded := g.methods[info.FullMethod]
	if !guarded {
		return handler(ctx, req)
	}
	ck, err := clientKey(ctx)
	if err != nil {
		return nil, err
	}
	fp, err := fingerprint(req)
	if err != nil {
		g.logger.ErrorContext(ctx, "idempotency: cannot fingerprint request", "method", m.name, "error", err)
		return nil, status.Error(codes.Internal, "internal error")
	}
	id := caller.From(ctx)
	scope := id.Scope()
	if scope == "" {
		// authz admits no anonymous caller to a mutating RPC; a server
		// wired without it must not share one key space among everybody.
		return nil, status.Error(codes.Unauthenticated, "idempotency keys need an authenticated caller")
	}
	key := Key(scope, m.name, ck)
	ctx = withKey(ctx, key)

	m.checks.Inc()
	if m.policy.Sensitive && id.EndUser() != "" {
		// Tracked before the claim: a record that exists is always
		// forgettable (a failed claim leaves a harmless dangling entry).
		if err := g.store.Track(ctx, scope, key, g.opts.TTL); err != nil {
			return g.storeFailed(ctx, m, err, req, handler)
		}
	}
	// The owner token is chosen before the call, so that a retried claim
	// is recognised as ours, and the lease counted from before it, so that
	// it cannot have started earlier than the Guard assumes.
	owner := NewOwner()
	claimed := time.Now()
	existing, err := g.store.Claim(ctx, key, owner, fp, g.opts.LockTTL)
	switch {
	case err != nil:
		return g.storeFailed(ctx, m, err, req, handler)
	case existing != nil:
		return g.duplicate(ctx, m, existing, fp)
	}
	return g.run(ctx, m, key, owner, claimed, req, handler)
}

// storeFailed answers a call whose key the store could not check: run
// unguarded if the method's database constraint guards it, else refuse.
func (g *Guard) storeFailed(ctx context.Context, m *method, err error, req any, handler grpc.UnaryHandler) (any, error) {
	switch {
	case ctx.Err() != nil:
		// The client gave up or the deadline passed: not a store failure.
		return nil, status.FromContextError(ctx.Err()).Err()
	case m.policy.RedisDownSafe:
		g.redisErrors.Inc()
		g.logger.WarnContext(ctx, "idempotency store failed; running unguarded, the database constraint guards this method",
			"method", m.name, "error", err)
		return handler(ctx, req)
	default:
		g.redisErrors.Inc()
		g.logger.ErrorContext(ctx, "idempotency store failed; rejecting call", "method", m.name, "error", err)
		return nil, status.Error(codes.Unavailable, msgUnavailable)
	}
}

// Forget deletes the stored keys of user's sensitive calls (the seed's
// "clear keys on logout"): a retry with such a key then runs again, where
// the database constraints of the RPC still prevent a second effect. It
// returns how many were deleted.
func (g *Guard) Forget(ctx context.Context, user string) (int, error) {
	return g.store.Forget(ctx, caller.Identity{User: user}.Scope())
}

// duplicate answers a call whose key was already claimed.
func (g *Guard) duplicate(ctx context.Context, m *method, rec *Record, fp []byte) (any, error) {
	if !bytes.Equal(rec.Fingerprint, fp) {
		m.mismatch.Inc()
		return nil, status.Error(codes.FailedPrecondition, msgMismatch)
	}
	if rec.State == InProgress {
		m.inProgress.Inc()
		return nil, status.Error(codes.Aborted, msgInProgress)
	}
	var resp proto.Message
	if rec.Outcome.Status.GetCode() == int32(codes.OK) {
		var err error
		if resp, err = anypb.UnmarshalNew(rec.Outcome.Response, proto.UnmarshalOptions{}); err != nil {
			g.logger.ErrorContext(ctx, "idempotency: stored response cannot be decoded", "method", m.name, "error", err)
			return nil, status.Error(codes.Internal, "internal error")
		}
	}
	m.hits.Inc()
	if err := grpc.SetHeader(ctx, metadata.Pairs(ReplayedHeader, "true")); err != nil {
		// Only fails outside a gRPC server stream; the replay itself is intact.
		g.logger.DebugContext(ctx, "idempotency: cannot set replay header", "error", err)
	}
	if resp == nil {
		return nil, status.ErrorProto(rec.Outcome.Status)
	}
	return resp, nil
}

// run executes the handler under the claim, renewing its lease until the
// claim is settled: outcome stored, or released for a retry.
func (g *Guard) run(ctx context.Context, m *method, key, owner string, claimed time.Time, req any, handler grpc.UnaryHandler) (resp any, herr error) {
	hctx, cancel := context.WithTimeout(ctx, g.opts.HandlerTimeout)
	defer cancel()
	var fence context.CancelCauseFunc
	if !m.policy.RedisDownSafe {
		// Only a method that needs the claim to be safe stops when it is
		// lost; the others' database makes a concurrent duplicate harmless.
		hctx, fence = context.WithCancelCause(hctx)
		defer fence(nil)
	}
	l := g.hold(ctx, m, key, owner, claimed, fence)
	settled := false
	defer func() {
		if !settled { // the handler panicked: free the key rather than hold it until LockTTL
			g.settle(ctx, m, l, Outcome{}, false)
		}
		l.end()
	}()
	resp, herr = handler(hctx, req)
	switch {
	case herr == nil || ctx.Err() != nil:
	case errors.Is(context.Cause(hctx), errLeaseLost) && isCancellation(herr):
		// Stopped because the claim was lost, not because the client left.
		herr = status.Error(codes.Unavailable, msgLeaseLost)
	case errors.Is(hctx.Err(), context.DeadlineExceeded):
		g.logger.WarnContext(ctx, "idempotency: guarded handler ran out of its time budget; the key is released",
			"method", m.name, "handler_timeout", g.opts.HandlerTimeout, "error", herr)
	}
	out, replayable := outcome(resp, herr)
	if herr == nil && !replayable {
		g.logger.ErrorContext(ctx, "idempotency: response cannot be stored; a retry will run again",
			"method", m.name, "response_type", fmt.Sprintf("%T", resp))
	}
	g.settle(ctx, m, l, out, replayable)
	settled = true
	return resp, herr
}

// isCancellation reports whether a handler's error is its context's
// cancellation passed on.
func isCancellation(err error) bool {
	return errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled
}

// settle completes or releases the claim. Failures are logged, not returned:
// the handler's effect has happened and its result is the caller's answer.
func (g *Guard) settle(ctx context.Context, m *method, l *lease, out Outcome, replayable bool) {
	l.settling.Store(true)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.opts.StoreTimeout)
	defer cancel()
	var err error
	if replayable {
		err = g.store.Complete(sctx, l.key, l.owner, out, g.opts.TTL)
	} else {
		err = g.store.Release(sctx, l.key, l.owner)
	}
	switch {
	case errors.Is(err, ErrNotOwner):
		g.logger.WarnContext(ctx, "idempotency: the claim was lost before the outcome was stored; a retry runs again",
			"method", m.name, "replayable", replayable, "lock_ttl", g.opts.LockTTL)
	case err != nil:
		g.redisErrors.Inc()
		g.logger.ErrorContext(ctx, "idempotency: cannot settle claim; the key stays claimed until its lease expires",
			"method", m.name, "replayable", replayable, "lock_ttl", g.opts.LockTTL, "error", err)
	}
}

// outcome converts a handler result into the Outcome to store, and reports
// whether it is deterministic enough to replay.
func outcome(resp any, herr error) (Outcome, bool) {
	if herr != nil {
		st, ok := status.FromError(herr)
		if !ok || !replayableCodes[st.Code()] {
			return Outcome{}, false
		}
		return Outcome{Status: st.Proto()}, true
	}
	msg, ok := resp.(proto.Message)
	if !ok {
		return Outcome{}, false
	}
	a, err := anypb.New(msg)
	if err != nil {
		return Outcome{}, false
	}
	return Outcome{Status: status.New(codes.OK, "").Proto(), Response: a}, true
}

// replayableCodes are the errors a rerun would reproduce: business answers,
// not accidents. NotFound and PermissionDenied are not among them: the
// resource may be created, the permission granted, and a retry with the
// same key must then run.
var replayableCodes = map[codes.Code]bool{
	codes.InvalidArgument:    true,
	codes.AlreadyExists:      true,
	codes.FailedPrecondition: true,
	codes.OutOfRange:         true,
}
