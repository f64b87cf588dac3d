// Package warm runs functions on goroutines that stay a while after each
// one returns, so that the next function reuses a stack already grown. A
// goroutine starts with a small stack and copies it every time a call
// chain outgrows it: a saga execution, or a pipeline to Redis over TLS,
// outgrows it several times, and in the order saga those copies
// (runtime.newstack) were 2-3 % of the orchestrator's and the payment
// service's CPU (docs/benchmarks.md). grpc-go's stream workers do the
// same for the services' calls.
package warm

import (
	"sync/atomic"
	"time"
)

// Pool hands functions to its idle goroutines and starts one when none is
// idle. A goroutine waits Linger after its function returns for the next
// one, then ends: a pool has as many goroutines as its busiest moment
// needed, for at most Linger after it. The zero Pool is not usable; make
// one with New.
type Pool struct {
	handoff chan func()
	linger  time.Duration
	idle    atomic.Int64
}

// New returns a pool whose goroutines wait linger (at least 1 ms) for more
// work.
func New(linger time.Duration) *Pool {
	return &Pool{handoff: make(chan func()), linger: max(linger, time.Millisecond)}
}

// Go runs f on an idle goroutine of the pool, or on a new one if none is
// idle. Like the go statement it does not wait for f.
func (p *Pool) Go(f func()) {
	select {
	case p.handoff <- f:
	default:
		go p.work(f)
	}
}

// Idle is how many goroutines wait for work.
func (p *Pool) Idle() int { return int(p.idle.Load()) }

func (p *Pool) work(f func()) {
	var t *time.Timer
	for {
		f()
		if t == nil {
			t = time.NewTimer(p.linger)
		} else {
			t.Reset(p.linger)
		}
		p.idle.Add(1)
		select {
		case f = <-p.handoff:
			p.idle.Add(-1)
		case <-t.C:
			p.idle.Add(-1)
			return
		}
	}
}
