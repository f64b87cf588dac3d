package idempotency

import (
	"context"
	"slices"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Batching defaults: see RedisOptions.
const (
	DefaultMaxPipelines = 2
	DefaultMaxBatch     = 256
)

// batcher coalesces the commands of concurrent callers into pipelines, one
// round trip each. One client with many callers is bound by round trips,
// not by Redis: each command alone costs a write and a read system call on
// both sides, which batching shares among every command of a pipeline.
//
// There is no waiting for a batch to fill: a command is sent at once when
// fewer than maxPipelines pipelines are in flight, and otherwise joins the
// queue that goes out, whole (up to maxBatch), as soon as one of them
// returns. A command therefore waits for at most the pipelines ahead of it,
// and a lone caller pays one round trip as without batching. No goroutine
// outlives the queue: a caller that finds a free slot starts one, which
// sends batches while there are any.
//
// Each caller gets its own command's result: a Redis error (a script's
// error, NOSCRIPT) fails only that command, and a failed round trip fails
// the commands of that pipeline, not the queue behind it. go-redis retries
// a pipeline whose connection failed (MaxRetries), like a single command;
// the store's scripts are written to be run twice (see Store).
type batcher struct {
	client       redis.UniversalClient
	maxPipelines int
	maxBatch     int

	mu       sync.Mutex
	queue    []*queued
	inFlight int
}

// queued is one caller's command; done is closed once cmd holds its result.
type queued struct {
	ctx  context.Context
	cmd  redis.Cmder
	done chan struct{}
}

func newBatcher(client redis.UniversalClient, maxPipelines, maxBatch int) *batcher {
	if maxPipelines <= 0 {
		maxPipelines = DefaultMaxPipelines
	}
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatch
	}
	return &batcher{client: client, maxPipelines: maxPipelines, maxBatch: maxBatch}
}

// do runs cmd in a pipeline with the commands of other callers and returns
// its error (cmd holds the result). If ctx ends first, do returns ctx's
// error at once: cmd is then dropped if it was not sent yet, and may still
// run otherwise — its outcome is unknown, as for a command whose reply was
// lost, and the caller must not read cmd.
func (b *batcher) do(ctx context.Context, cmd redis.Cmder) error {
	q := &queued{ctx: ctx, cmd: cmd, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, q)
	var batch []*queued
	if b.inFlight < b.maxPipelines {
		b.inFlight++
		batch = b.takeLocked()
	}
	b.mu.Unlock()
	if batch != nil {
		// Sent by a goroutine, not by this caller, which must be free to
		// return when ctx ends: a pipeline ends only with its round trip.
		go b.drain(batch)
	}
	select {
	case <-q.done:
		return cmd.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// drain sends batches until the queue is empty, then frees its slot.
func (b *batcher) drain(batch []*queued) {
	for batch != nil {
		b.exec(batch)
		batch = b.nextOrRelease()
	}
}

// nextOrRelease takes the next batch for a sender whose pipeline returned,
// or frees its slot if nothing is queued.
func (b *batcher) nextOrRelease() []*queued {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 {
		b.inFlight--
		return nil
	}
	return b.takeLocked()
}

// takeLocked removes up to maxBatch commands from the head of the queue.
func (b *batcher) takeLocked() []*queued {
	n := min(len(b.queue), b.maxBatch)
	batch := b.queue[:n:n]
	if n == len(b.queue) {
		b.queue = nil
	} else {
		b.queue = b.queue[n:]
	}
	return batch
}

// exec sends one pipeline of the batch's live commands and wakes their
// callers. Commands whose caller gave up are not sent. The pipeline runs
// without any caller's cancellation or deadline (each caller stops waiting
// on its own; the client's read and write timeouts bound it) but with the
// values of the first live caller's context: its span is the parent of
// the pipeline's, so a request's trace shows its Redis call (the others in
// the batch show only their wait).
func (b *batcher) exec(batch []*queued) {
	live := make([]redis.Cmder, 0, len(batch))
	var pctx context.Context
	for _, q := range batch {
		if err := q.ctx.Err(); err != nil {
			// Its caller may yet read done before ctx: never a nil
			// error for a command that did not run.
			q.cmd.SetErr(err)
			continue
		}
		if pctx == nil {
			pctx = context.WithoutCancel(q.ctx)
		}
		live = append(live, q.cmd)
	}
	if len(live) > 0 {
		pipe := b.client.Pipeline()
		for _, c := range live {
			_ = pipe.Process(pctx, c) // queues; the error is c's, set by Exec
		}
		// Exec sets every command's own error, including a failed round
		// trip's on each command it carried; callers read their own. A
		// pipeline stopped before it ran (a hook refusing it) sets none:
		// its commands must not read as done.
		if _, err := pipe.Exec(pctx); err != nil && !slices.ContainsFunc(live, failed) {
			for _, c := range live {
				c.SetErr(err)
			}
		}
	}
	for _, q := range batch {
		close(q.done)
	}
}

func failed(c redis.Cmder) bool { return c.Err() != nil }
