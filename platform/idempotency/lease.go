package idempotency

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// errLeaseLost is the cause of a guarded handler's context when its claim
// was lost.
var errLeaseLost = errors.New("idempotency: claim lost")

// lease keeps a claim alive while its holder works on it: it renews the
// claim every LockTTL/3 until end. If a renewal finds the claim gone, or
// none has succeeded for 2/3 of LockTTL (the claim may expire within the
// last third), the claim is lost: counted, logged, and fenced off by
// cancelling the handler's context (fence; nil for a RedisDownSafe method,
// which runs on and keeps trying to renew while the store fails).
//
// Renewals run on a timer (time.AfterFunc), one at a time, each scheduling
// the next: most calls end before the first is due and cost no goroutine.
type lease struct {
	g          *Guard
	m          *method
	key, owner string
	fence      context.CancelCauseFunc
	// logCtx carries the request's values, not its cancellation.
	logCtx context.Context
	// settling is set when the claim is being completed or released: a
	// renewal then finding it gone is not a loss.
	settling atomic.Bool

	mu    sync.Mutex
	timer *time.Timer
	ended bool
	// abort cancels the renewal in flight, if any.
	abort context.CancelFunc
	// running counts renewals in flight (0 or 1), for end to wait.
	running sync.WaitGroup
	// valid is when the claim may expire at the earliest: LockTTL after
	// the last successful renewal (or the claim) was sent, as Redis counts
	// it from a later moment. warned says a failed renewal was logged.
	valid  time.Time
	warned bool
}

// hold starts renewing the claim of key by owner, whose Claim was sent at
// claimed.
func (g *Guard) hold(ctx context.Context, m *method, key, owner string, claimed time.Time, fence context.CancelCauseFunc) *lease {
	l := &lease{g: g, m: m, key: key, owner: owner, fence: fence, logCtx: context.WithoutCancel(ctx), valid: claimed.Add(g.opts.LockTTL)}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.timer = time.AfterFunc(time.Until(claimed.Add(g.opts.LockTTL/3)), l.renew)
	return l
}

// end stops the renewals and waits for one in flight: after it, nothing
// touches the claim on the lease's behalf.
func (l *lease) end() {
	l.mu.Lock()
	l.ended = true
	l.timer.Stop()
	if l.abort != nil {
		l.abort()
	}
	l.mu.Unlock()
	l.running.Wait()
}

// renew renews the claim once and schedules the next renewal, unless the
// lease ended or the claim is lost.
func (l *lease) renew() {
	ttl := l.g.opts.LockTTL
	every := ttl / 3
	sent := time.Now()
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	fenceAt := l.valid.Add(-every)
	deadline := sent.Add(every)
	if l.fence != nil && fenceAt.Before(deadline) {
		deadline = fenceAt
	}
	ctx, abort := context.WithDeadline(l.logCtx, deadline)
	l.abort = abort
	l.running.Add(1)
	l.mu.Unlock()
	defer l.running.Done()

	err := l.g.store.Renew(ctx, l.key, l.owner, ttl)
	aborted := errors.Is(ctx.Err(), context.Canceled)
	abort()

	var next time.Duration
	switch {
	case aborted || l.settling.Load():
		return // ended, or the claim is being settled: gone is not lost
	case err == nil:
		l.mu.Lock()
		l.valid, l.warned = sent.Add(ttl), false
		l.mu.Unlock()
		next = time.Until(sent.Add(every))
	case errors.Is(err, ErrNotOwner):
		l.lose("a renewal found the claim gone: it expired or was taken over", err)
		return
	default:
		l.g.redisErrors.Inc()
		if l.fence != nil && !time.Now().Before(fenceAt) {
			l.lose("no renewal succeeded in time: the claim may expire", err)
			return
		}
		l.mu.Lock()
		warn, valid := !l.warned, l.valid
		l.warned = true
		l.mu.Unlock()
		if warn {
			l.g.logger.WarnContext(l.logCtx, "idempotency: cannot renew the claim; retrying",
				"method", l.m.name, "lock_ttl", ttl, "valid_for", time.Until(valid), "error", err)
		}
		// Retry soon; a fenced method's last try is due at fenceAt.
		next = every / 4
		if l.fence != nil {
			next = min(next, time.Until(fenceAt))
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.ended {
		l.timer.Reset(next)
	}
}

// lose records that the claim was lost while the handler ran, and fences
// the handler off if its method needs the claim.
func (l *lease) lose(why string, err error) {
	l.m.leasesLost.Inc()
	if l.fence == nil {
		l.g.logger.WarnContext(l.logCtx, "idempotency: claim lost while the handler runs; it goes on, the database guards a duplicate",
			"method", l.m.name, "reason", why, "lock_ttl", l.g.opts.LockTTL, "error", err)
		return
	}
	l.g.logger.ErrorContext(l.logCtx, "idempotency: claim lost while the handler runs; cancelling it so that a retry cannot run beside it",
		"method", l.m.name, "reason", why, "lock_ttl", l.g.opts.LockTTL, "error", err)
	l.fence(errLeaseLost)
}
