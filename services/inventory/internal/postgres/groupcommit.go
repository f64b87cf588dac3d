package postgres

import (
	"context"
	"slices"
	"sync"
	"time"
)

// groupCommit runs the writes of one hot key in this process one
// transaction at a time, each transaction carrying every write that queued
// while the previous one committed.
//
// Why: a hot row's writers are serialized by its row lock, which
// PostgreSQL holds until the commit is on disk, so one transaction per
// write caps the row at one write per WAL flush (about 1,000/s here) and
// leaves the waiters holding pool connections. Queued in process, the
// writes of a hot key share one transaction, one flush and one
// connection, and nobody waits on the lock but the queue's own
// transaction. Each write is still durable before its caller hears of it.
//
// The first caller to find a key idle leads: it takes the queue, runs it,
// and hands the lead to the first caller that queued meanwhile, so no
// caller waits for more than the batch before its own and its own.
type groupCommit[C any] struct {
	// maxBatch bounds one transaction's writes: its lock hold and its size.
	maxBatch int
	// timeout bounds a batch, which runs detached from its callers'
	// contexts: once a write is in a transaction, its caller must hear the
	// outcome, not a cancellation that leaves it unknown.
	timeout time.Duration

	mu     sync.Mutex
	queues map[string]*keyQueue[C]
}

type keyQueue[C any] struct {
	pending []*queued[C]
}

type queued[C any] struct {
	call C
	// taken is set, under mu, once the call is in a batch (or leads one):
	// from then on it waits for the outcome whatever its context says.
	taken bool
	lead  chan struct{} // closed: lead the next batch
	done  chan struct{} // closed: the batch holding call has run
}

func newGroupCommit[C any](maxBatch int, timeout time.Duration) *groupCommit[C] {
	return &groupCommit[C]{maxBatch: maxBatch, timeout: timeout, queues: make(map[string]*keyQueue[C])}
}

// do queues call on key and returns once a batch holding it has run: run
// must set every call's outcome (in the call itself). It returns ctx's
// error, without running call, only if ctx ends while call is still
// queued.
func (g *groupCommit[C]) do(ctx context.Context, key string, call C, run func(context.Context, []C)) error {
	me := &queued[C]{call: call, lead: make(chan struct{}), done: make(chan struct{})}
	g.mu.Lock()
	q, busy := g.queues[key]
	if !busy {
		q = &keyQueue[C]{}
		g.queues[key] = q
		me.taken = true // leads at once
	}
	q.pending = append(q.pending, me)
	g.mu.Unlock()

	if busy {
		select {
		case <-me.done:
			return nil
		case <-me.lead:
		case <-ctx.Done():
			g.mu.Lock()
			if !me.taken {
				q.pending = slices.DeleteFunc(q.pending, func(w *queued[C]) bool { return w == me })
				g.mu.Unlock()
				return ctx.Err()
			}
			g.mu.Unlock()
			select { // in a batch or told to lead: see it through
			case <-me.done:
				return nil
			case <-me.lead:
			}
		}
	}

	// Lead one batch: it holds this call, the first pending.
	g.mu.Lock()
	n := min(len(q.pending), g.maxBatch)
	batch := q.pending[:n:n]
	q.pending = q.pending[n:]
	calls := make([]C, n)
	for i, w := range batch {
		w.taken = true
		calls[i] = w.call
	}
	g.mu.Unlock()

	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.timeout)
	run(bctx, calls)
	cancel()
	for _, w := range batch {
		close(w.done)
	}

	g.mu.Lock()
	if len(q.pending) == 0 {
		delete(g.queues, key)
	} else {
		next := q.pending[0]
		next.taken = true
		close(next.lead)
	}
	g.mu.Unlock()
	return nil
}
