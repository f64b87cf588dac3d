package postgres

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type countCall struct{ ran atomic.Int32 }

func TestGroupCommitRunsEveryCallOnceInBatches(t *testing.T) {
	g := newGroupCommit[*countCall](8, time.Second)
	var (
		inRun    atomic.Int32
		batches  atomic.Int32
		overlaps atomic.Int32
	)
	run := func(_ context.Context, calls []*countCall) {
		if inRun.Add(1) > 1 {
			overlaps.Add(1)
		}
		batches.Add(1)
		require.LessOrEqual(t, len(calls), 8)
		time.Sleep(time.Millisecond) // a transaction's worth: others queue meanwhile
		for _, c := range calls {
			c.ran.Add(1)
		}
		inRun.Add(-1)
	}
	const n = 200
	calls := make([]*countCall, n)
	var wg sync.WaitGroup
	for i := range calls {
		calls[i] = &countCall{}
		wg.Go(func() { require.NoError(t, g.do(t.Context(), "K", calls[i], run)) })
	}
	wg.Wait()
	for i, c := range calls {
		require.EqualValues(t, 1, c.ran.Load(), "call %d", i)
	}
	require.Zero(t, overlaps.Load(), "one batch of a key at a time")
	require.Less(t, batches.Load(), int32(n), "calls shared batches")
	require.Empty(t, g.queues, "an idle key is forgotten")
}

func TestGroupCommitCancelledWhileQueuedDoesNotRun(t *testing.T) {
	g := newGroupCommit[*countCall](8, time.Second)
	release := make(chan struct{})
	started := make(chan struct{})
	leader, queued := &countCall{}, &countCall{}
	done := make(chan error, 1)
	go func() {
		done <- g.do(t.Context(), "K", leader, func(_ context.Context, calls []*countCall) {
			close(started)
			<-release
			for _, c := range calls {
				c.ran.Add(1)
			}
		})
	}()
	<-started
	ctx, cancel := context.WithCancel(t.Context())
	queuedDone := make(chan error, 1)
	go func() {
		queuedDone <- g.do(ctx, "K", queued, func(context.Context, []*countCall) { t.Error("must not lead") })
	}()
	require.Eventually(t, func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return len(g.queues["K"].pending) == 1
	}, 5*time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-queuedDone, context.Canceled)
	close(release)
	require.NoError(t, <-done)
	require.EqualValues(t, 1, leader.ran.Load())
	require.Zero(t, queued.ran.Load(), "a call cancelled before its batch never runs")
}
