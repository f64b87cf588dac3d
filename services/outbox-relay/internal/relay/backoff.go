package relay

import (
	"math/rand/v2"
	"time"
)

// backoff is capped exponential backoff with full jitter on the upper half:
// replicas retrying against one recovering broker or database do not
// retry in lockstep.
type backoff struct {
	min, max, cur time.Duration
}

func (r *Relay) newBackoff() *backoff {
	return &backoff{min: r.cfg.BackoffMin, max: r.cfg.BackoffMax}
}

// next returns the wait before the next attempt and doubles it, up to max.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	half := b.cur / 2
	return half + time.Duration(rand.Int64N(int64(half)+1)) //nolint:gosec // jitter, not a secret
}

// reset starts over after a success.
func (b *backoff) reset() { b.cur = 0 }
