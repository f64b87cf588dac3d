// Package backoff is the one retry policy of the platform: exponential growth
// with jitter, used by every loop that waits between attempts (the outbox
// relay, inbox consumers, the order projection, optimistic-lock retries, saga
// steps, start-up waits for PostgreSQL and Redis), and a sleep that ends with
// the context.
package backoff

import (
	"context"
	"math"
	"math/rand/v2"
	"time"
)

// Jitter is how a wait is drawn below its step.
type Jitter int

const (
	// EqualJitter draws from [step/2, step]: replicas retrying against one
	// recovering server do not retry in lockstep, yet never wait much less
	// than the step. The zero value.
	EqualJitter Jitter = iota
	// FullJitter draws from [0, step]: writers who collided once spread
	// out most (optimistic-lock conflicts).
	FullJitter
	// NoJitter waits the step itself.
	NoJitter
)

// Policy is exponential backoff: the step before retry n (n ≥ 1) is
// min(Max, Min·2ⁿ⁻¹), and the wait is drawn below it as Jitter says.
type Policy struct {
	// Min is the step before the first retry.
	Min time.Duration
	// Max caps every step; zero or less means no cap.
	Max    time.Duration
	Jitter Jitter
}

// Step returns the ceiling of the wait before retry n (n ≥ 1).
func (p Policy) Step(n int) time.Duration {
	d := max(p.Min, 0)
	for i := 1; i < n; i++ {
		if (p.Max > 0 && d >= p.Max) || d > math.MaxInt64/2 {
			break // doubling further cannot matter and might overflow
		}
		d *= 2
	}
	if p.Max > 0 {
		d = min(d, p.Max)
	}
	return d
}

// Delay returns the jittered wait before retry n (n ≥ 1).
func (p Policy) Delay(n int) time.Duration {
	step := p.Step(n)
	if step <= 0 {
		return 0
	}
	switch p.Jitter {
	case FullJitter:
		return randUpTo(step)
	case NoJitter:
		return step
	default:
		return step/2 + randUpTo(step-step/2)
	}
}

// randUpTo returns a random duration in [0, d].
func randUpTo(d time.Duration) time.Duration {
	return time.Duration(rand.Int64N(int64(d) + 1)) //nolint:gosec // jitter needs spread, not secrecy
}

// Exponential counts the retries of one loop under its Policy. The zero
// count is ready to use; not safe for concurrent use.
type Exponential struct {
	Policy
	retries int
}

// Next returns the wait before the next retry.
func (b *Exponential) Next() time.Duration {
	b.retries++
	return b.Delay(b.retries)
}

// Reset starts over from Min, after a success.
func (b *Exponential) Reset() { b.retries = 0 }

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
