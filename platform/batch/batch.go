// Package batch coalesces the requests of concurrent callers into batches,
// one round trip each: the idempotency store's Redis scripts and the saga
// engine's PostgreSQL transitions. A request sent alone costs a write and
// a read system call on both sides and, for PostgreSQL, a commit; a batch
// shares them among all of its requests.
//
// There is no waiting for a batch to fill: a request goes out at once
// while fewer than MaxInFlight batches are in flight, and otherwise joins
// the queue that goes out, whole (up to MaxBatch), as soon as one of them
// returns. A request therefore waits for at most the batches ahead of it,
// and a lone caller pays one round trip, as without batching. The caller
// that finds a free slot hands the batch to a sender goroutine, which sends
// batches while there are any; senders wait a second for the next batch
// before they end, so that a busy queue reuses their grown stacks
// (platform/internal/warm).
package batch

import (
	"slices"
	"sync"
	"time"

	"github.com/goodgo/goodgo/platform/internal/warm"
)

// senderLinger is how long a sender goroutine waits for the next batch.
const senderLinger = time.Second

// Queue batches requests of type T for its send function.
type Queue[T comparable] struct {
	send        func([]T)
	maxInFlight int
	maxBatch    int
	senders     *warm.Pool

	mu       sync.Mutex
	queue    []T
	inFlight int // batches handed to send and not yet returned
}

// New returns a queue that hands batches to send, at most maxInFlight at
// once and at most maxBatch requests each (both at least 1). send owns the
// batch, runs on a goroutine of the queue's, and must wake the batch's
// callers itself.
func New[T comparable](maxInFlight, maxBatch int, send func(batch []T)) *Queue[T] {
	return &Queue[T]{send: send, maxInFlight: max(1, maxInFlight), maxBatch: max(1, maxBatch), senders: warm.New(senderLinger)}
}

// Add queues r for the next batch.
func (q *Queue[T]) Add(r T) {
	q.mu.Lock()
	q.queue = append(q.queue, r)
	var batch []T
	if q.inFlight < q.maxInFlight {
		q.inFlight++
		batch = q.takeLocked()
	}
	q.mu.Unlock()
	if batch != nil {
		// Sent by a goroutine, not by this caller, which must be free to
		// return when its context ends: a batch ends only with its round
		// trip.
		q.senders.Go(func() { q.drain(batch) })
	}
}

// Remove takes r out of the queue if no batch has taken it yet, and
// reports whether it did: false means r is in a batch, sent or about to be.
func (q *Queue[T]) Remove(r T) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.Index(q.queue, r)
	if i < 0 {
		return false
	}
	q.queue = slices.Delete(q.queue, i, i+1)
	return true
}

// Len is how many requests wait for a batch.
func (q *Queue[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.queue)
}

// InFlight is how many batches are with send.
func (q *Queue[T]) InFlight() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.inFlight
}

// drain sends batches until the queue is empty, then frees its slot.
func (q *Queue[T]) drain(batch []T) {
	for batch != nil {
		q.send(batch)
		batch = q.nextOrRelease()
	}
}

// nextOrRelease takes the next batch for a sender whose batch returned, or
// frees its slot if nothing is queued.
func (q *Queue[T]) nextOrRelease() []T {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.queue) == 0 {
		q.inFlight--
		return nil
	}
	return q.takeLocked()
}

// takeLocked removes up to maxBatch requests from the head of the queue.
func (q *Queue[T]) takeLocked() []T {
	n := min(len(q.queue), q.maxBatch)
	batch := slices.Clone(q.queue[:n])
	q.queue = slices.Delete(q.queue, 0, n)
	return batch
}
