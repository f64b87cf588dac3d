package batch_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/batch"
)

// recorder is a send function that records its batches and, while gate
// is closed, holds them (a round trip in flight).
type recorder struct {
	mu      sync.Mutex
	batches [][]int
	gate    chan struct{}
	sent    chan struct{} // a batch arrived
}

func newRecorder(held bool) *recorder {
	r := &recorder{gate: make(chan struct{}), sent: make(chan struct{}, 100)}
	if !held {
		close(r.gate)
	}
	return r
}

func (r *recorder) send(b []int) {
	r.mu.Lock()
	r.batches = append(r.batches, b)
	r.mu.Unlock()
	r.sent <- struct{}{}
	<-r.gate
}

func (r *recorder) got() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]int(nil), r.batches...)
}

func (r *recorder) waitBatches(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.sent:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d batches of %d expected, got %v", n, n, r.got())
		}
	}
}

func TestALoneRequestGoesOutAtOnce(t *testing.T) {
	t.Parallel()
	r := newRecorder(false)
	q := batch.New(2, 8, r.send)
	q.Add(1)
	r.waitBatches(t, 1)
	q.Add(2)
	r.waitBatches(t, 1)
	require.Equal(t, [][]int{{1}, {2}}, r.got())
}

func TestRequestsQueuedBehindAFullPipeGoOutTogether(t *testing.T) {
	t.Parallel()
	r := newRecorder(true)
	q := batch.New(1, 2, r.send)
	q.Add(1)
	r.waitBatches(t, 1) // in flight, held: the only slot is taken
	for i := 2; i <= 6; i++ {
		q.Add(i)
	}
	require.Equal(t, 5, q.Len())
	close(r.gate)
	r.waitBatches(t, 3)
	require.Equal(t, [][]int{{1}, {2, 3}, {4, 5}, {6}}, r.got(), "in order, at most MaxBatch each")
	require.Zero(t, q.Len())
	// The slot was freed: the next request goes out at once.
	q.Add(7)
	r.waitBatches(t, 1)
	require.Equal(t, []int{7}, r.got()[4])
}

func TestRemoveTakesOutOnlyWhatIsStillQueued(t *testing.T) {
	t.Parallel()
	r := newRecorder(true)
	q := batch.New(1, 8, r.send)
	q.Add(1)
	r.waitBatches(t, 1)
	q.Add(2)
	q.Add(3)
	require.True(t, q.Remove(2), "queued")
	require.False(t, q.Remove(1), "in a batch already")
	require.False(t, q.Remove(2), "removed already")
	close(r.gate)
	r.waitBatches(t, 1)
	require.Equal(t, [][]int{{1}, {3}}, r.got())
}

func TestBatchesInFlightAreBounded(t *testing.T) {
	t.Parallel()
	r := newRecorder(true)
	q := batch.New(2, 8, r.send)
	q.Add(1)
	q.Add(2)
	r.waitBatches(t, 2) // both slots taken
	q.Add(3)
	select {
	case <-r.sent:
		t.Fatalf("a third batch went out with two in flight: %v", r.got())
	case <-time.After(50 * time.Millisecond): // a window in which a wrong send would show, not a wait for a condition
	}
	require.Equal(t, 1, q.Len())
	close(r.gate)
	r.waitBatches(t, 1)
	require.Equal(t, []int{3}, r.got()[2])
}
