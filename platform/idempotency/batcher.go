package idempotency

import (
	"context"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/goodgo/goodgo/platform/batch"
)

// Batching defaults: see RedisOptions. One pipeline in flight: while it
// is out, every caller's command joins the next one, so pipelines are
// larger and fewer, each a write and a read system call on both sides.
// With two, a round trip to a local Redis is short enough that most
// pipelines carried a few commands (replays at 64 callers: 106k checks/s,
// p99 3.1 ms, against 147k and 1.7 ms with one; docs/benchmarks.md).
const (
	DefaultMaxPipelines = 1
	DefaultMaxBatch     = 256
)

// batcher coalesces the commands of concurrent callers into pipelines, one
// round trip each (package batch: no waiting to fill a pipeline, at most
// maxPipelines in flight, a lone caller pays one round trip as without
// batching). One client with many callers is bound by round trips, not by
// Redis: each command alone costs a write and a read system call on both
// sides, which batching shares among every command of a pipeline.
//
// Each caller gets its own command's result: a Redis error (a script's
// error, NOSCRIPT) fails only that command, and a failed round trip fails
// the commands of that pipeline, not the queue behind it. go-redis retries
// a pipeline whose connection failed (MaxRetries), like a single command;
// the store's commands are written to be run twice (see Store).
type batcher struct {
	client redis.UniversalClient
	queue  *batch.Queue[*queued]
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
	b := &batcher{client: client}
	b.queue = batch.New(maxPipelines, maxBatch, b.exec)
	return b
}

// do runs cmd in a pipeline with the commands of other callers and returns
// its error (cmd holds the result). If ctx ends first, do returns ctx's
// error at once: cmd is then dropped if it was not sent yet, and may still
// run otherwise — its outcome is unknown, as for a command whose reply was
// lost, and the caller must not read cmd.
func (b *batcher) do(ctx context.Context, cmd redis.Cmder) error {
	q := &queued{ctx: ctx, cmd: cmd, done: make(chan struct{})}
	b.queue.Add(q)
	select {
	case <-q.done:
		return cmd.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
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
