// Package backoff is the waiting between retries shared by the platform's
// loops (the outbox relay, inbox consumers, optimistic-lock retries, saga
// steps): exponential growth with jitter, and a sleep that ends with the
// context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Exponential doubles from Min to Max and draws each wait from the upper
// half of the current step: jittered, so replicas retrying against one
// recovering server do not retry in lockstep, yet never much shorter than
// the step. The zero value of the state is ready to use; not safe for
// concurrent use.
type Exponential struct {
	Min, Max time.Duration
	cur      time.Duration
}

// Next returns the wait before the next attempt and doubles the step, up to
// Max.
func (b *Exponential) Next() time.Duration {
	if b.cur == 0 {
		b.cur = b.Min
	} else {
		b.cur = min(b.cur*2, b.Max)
	}
	half := b.cur / 2
	return half + time.Duration(rand.Int64N(int64(half)+1)) //nolint:gosec // jitter, not a secret
}

// Reset starts over from Min, after a success.
func (b *Exponential) Reset() { b.cur = 0 }

// Sleep waits d or until ctx is done, and returns ctx.Err() in that case.
// A d of zero or less returns at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
