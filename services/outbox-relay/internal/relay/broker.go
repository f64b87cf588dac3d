package relay

import (
	"sync"
	"time"
)

// publishHealth follows whether this replica can publish, from the outcome
// of its publish attempts. It is relay-wide: one Kafka cluster serves every
// database. Safe for concurrent use.
type publishHealth struct {
	mu sync.Mutex
	// failingSince is the first failed attempt since the last success (or
	// since the last reset); zero when not failing.
	failingSince time.Time
	lastErr      error
	lastOK       time.Time
	lastFailure  time.Time
}

// ok records an acknowledged publish and returns for how long attempts
// had been failing before it (0 when they were not).
func (h *publishHealth) ok(now time.Time) (failedFor time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.failingSince.IsZero() {
		failedFor = now.Sub(h.failingSince)
	}
	h.failingSince, h.lastErr, h.lastOK = time.Time{}, nil, now
	return failedFor
}

// failed records a publish attempt that failed for a reason retrying may
// fix (broker, network, leadership) — not a message the broker refused.
func (h *publishHealth) failed(now time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failingSince.IsZero() {
		h.failingSince = now
	}
	h.lastErr, h.lastFailure = err, now
}

// reset forgets the failures: the broker answered a probe, so the next
// attempts are judged afresh.
func (h *publishHealth) reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.failingSince, h.lastErr = time.Time{}, nil
}

// failing reports for how long every attempt has failed (0 when the last
// one succeeded or none was made), when the last attempt failed, and its
// error.
func (h *publishHealth) failing(now time.Time) (time.Duration, time.Time, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failingSince.IsZero() {
		return 0, time.Time{}, nil
	}
	return max(now.Sub(h.failingSince), time.Nanosecond), h.lastFailure, h.lastErr
}

// succeededSince reports whether a publish was acknowledged after t.
func (h *publishHealth) succeededSince(t time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastOK.After(t)
}
