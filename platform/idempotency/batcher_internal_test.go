package idempotency

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/tcpproxy"
)

// pipelineGate is a go-redis hook that counts pipelines and can hold the
// next one until released, or fail it without sending it.
type pipelineGate struct {
	pipelines, cmds atomic.Int64
	mu              sync.Mutex
	hold            chan struct{} // the next pipeline waits for it to close
	held            chan struct{} // closed when that pipeline is waiting
	fail            error         // the held pipeline fails with it, unsent
	// value and deadline are what the last pipeline's context carried.
	value    any
	deadline bool
}

// traceKey stands in for the span a request's context carries.
type traceKey struct{}

func (g *pipelineGate) DialHook(next redis.DialHook) redis.DialHook { return next }
func (g *pipelineGate) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return next
}

func (g *pipelineGate) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if slices.ContainsFunc(cmds, func(c redis.Cmder) bool { return c.Name() == "hello" || c.Name() == "client" }) {
			return next(ctx, cmds) // a new connection's handshake
		}
		g.pipelines.Add(1)
		g.cmds.Add(int64(len(cmds)))
		g.mu.Lock()
		g.value = ctx.Value(traceKey{})
		_, g.deadline = ctx.Deadline()
		hold, held, fail := g.hold, g.held, g.fail
		g.hold, g.held, g.fail = nil, nil, nil
		g.mu.Unlock()
		if hold != nil {
			close(held)
			<-hold
			if fail != nil {
				return fail
			}
		}
		return next(ctx, cmds)
	}
}

// holdNext makes the next pipeline wait until release is called; it
// fails with fail (if not nil) instead of running. held is closed once
// the pipeline waits.
func (g *pipelineGate) holdNext(fail error) (held <-chan struct{}, release func()) {
	hold, h := make(chan struct{}), make(chan struct{})
	g.mu.Lock()
	g.hold, g.held, g.fail = hold, h, fail
	g.mu.Unlock()
	return h, sync.OnceFunc(func() { close(hold) })
}

type batcherBundle struct {
	rdb    *redis.Client
	gate   *pipelineGate
	b      *batcher
	prefix string
}

// setupBatcher returns a batcher of at most maxPipelines pipelines on the
// test Redis, and a key prefix whose keys are deleted at cleanup.
func setupBatcher(t *testing.T, maxPipelines int) *batcherBundle {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	require.NoError(t, rdb.Ping(t.Context()).Err(), "the tests need Redis on 127.0.0.1:6379")
	gate := &pipelineGate{}
	rdb.AddHook(gate)
	prefix := "idembatch:" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		keys, err := rdb.Keys(ctx, prefix+"*").Result()
		require.NoError(t, err)
		if len(keys) > 0 {
			require.NoError(t, rdb.Del(ctx, keys...).Err())
		}
		require.NoError(t, rdb.Close())
	})
	return &batcherBundle{rdb: rdb, gate: gate, b: newBatcher(rdb, maxPipelines, 0), prefix: prefix}
}

// waitQueued waits until n commands wait in the batcher's queue.
func waitQueued(t *testing.T, b *batcher, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return b.queue.Len() == n }, 5*time.Second, time.Millisecond, "%d commands queued", n)
}

func TestBatcher(t *testing.T) {
	t.Parallel()

	t.Run("concurrent callers each get their own reply, sharing round trips", func(t *testing.T) {
		t.Parallel()
		tb := setupBatcher(t, 1)
		ctx := t.Context()
		// The first pipeline is held until every other caller queued, so
		// the second must carry them all.
		held, release := tb.gate.holdNext(nil)
		first := redis.NewStringCmd(ctx, "echo", "first")
		firstDone := make(chan error, 1)
		go func() { firstDone <- tb.b.do(ctx, first) }()
		<-held

		const callers = 100
		var wg sync.WaitGroup
		errs := make([]error, callers)
		cmds := make([]*redis.IntCmd, callers)
		for i := range callers {
			// INCRBY on a key of its own: a reply that names its caller.
			cmds[i] = redis.NewIntCmd(ctx, "incrby", fmt.Sprintf("%sc%d", tb.prefix, i), i+1)
			wg.Go(func() { errs[i] = tb.b.do(ctx, cmds[i]) })
		}
		waitQueued(t, tb.b, callers)
		release()
		wg.Wait()
		require.NoError(t, <-firstDone)
		require.Equal(t, "first", first.Val())
		for i := range callers {
			require.NoError(t, errs[i])
			require.Equal(t, int64(i+1), cmds[i].Val(), "caller %d's own reply", i)
		}
		require.Equal(t, int64(2), tb.gate.pipelines.Load(), "one pipeline for the first call, one for the rest")
		require.Equal(t, int64(callers+1), tb.gate.cmds.Load())
	})

	t.Run("a lone caller sends at once", func(t *testing.T) {
		t.Parallel()
		tb := setupBatcher(t, 1)
		cmd := redis.NewStringCmd(t.Context(), "echo", "alone")
		require.NoError(t, tb.b.do(t.Context(), cmd))
		require.Equal(t, "alone", cmd.Val())
		require.Equal(t, int64(1), tb.gate.pipelines.Load())
		require.Eventually(t, func() bool { return tb.b.queue.InFlight() == 0 }, 5*time.Second, time.Millisecond, "the slot is free again, no goroutine left")
	})

	t.Run("an error fails only its own command", func(t *testing.T) {
		t.Parallel()
		tb := setupBatcher(t, 1)
		ctx := t.Context()
		require.NoError(t, tb.rdb.Set(ctx, tb.prefix+"text", "not a number", 0).Err())
		held, release := tb.gate.holdNext(nil)
		go func() { _ = tb.b.do(ctx, redis.NewStatusCmd(ctx, "ping")) }()
		<-held

		bad := redis.NewIntCmd(ctx, "incr", tb.prefix+"text")
		good := redis.NewIntCmd(ctx, "incr", tb.prefix+"n")
		var wg sync.WaitGroup
		var badErr, goodErr error
		wg.Go(func() { badErr = tb.b.do(ctx, bad) })
		wg.Go(func() { goodErr = tb.b.do(ctx, good) })
		waitQueued(t, tb.b, 2)
		release()
		wg.Wait()
		require.ErrorContains(t, badErr, "not an integer")
		require.NoError(t, goodErr)
		require.Equal(t, int64(1), good.Val())
	})

	t.Run("a failed pipeline fails only its callers", func(t *testing.T) {
		t.Parallel()
		tb := setupBatcher(t, 1)
		ctx := t.Context()
		refused := errors.New("connection refused by the test")
		held, release := tb.gate.holdNext(refused)
		doomed := redis.NewStatusCmd(ctx, "set", tb.prefix+"doomed", "x")
		doomedErr := make(chan error, 1)
		go func() { doomedErr <- tb.b.do(ctx, doomed) }()
		<-held

		next := redis.NewStatusCmd(ctx, "set", tb.prefix+"next", "x")
		nextErr := make(chan error, 1)
		go func() { nextErr <- tb.b.do(ctx, next) }()
		waitQueued(t, tb.b, 1)
		release()
		require.ErrorIs(t, <-doomedErr, refused, "never reported as done")
		require.NoError(t, <-nextErr, "the queue behind it runs")
		n, err := tb.rdb.Exists(ctx, tb.prefix+"doomed", tb.prefix+"next").Result()
		require.NoError(t, err)
		require.Equal(t, int64(1), n, "only the second pipeline ran")
	})

	t.Run("a round trip that fails reaches every command of its pipeline", func(t *testing.T) {
		t.Parallel()
		// A listener that accepts and closes: every round trip fails.
		ln := tcpproxy.Serve(t, tcpproxy.Refuse)
		rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1})
		t.Cleanup(func() { _ = rdb.Close() })
		b := newBatcher(rdb, 1, 0)
		var wg sync.WaitGroup
		errs := make([]error, 10)
		for i := range errs {
			wg.Go(func() { errs[i] = b.do(t.Context(), redis.NewStatusCmd(t.Context(), "ping")) })
		}
		wg.Wait()
		for _, err := range errs {
			require.Error(t, err)
		}
	})

	t.Run("a caller that gives up while queued returns at once and its command is not sent", func(t *testing.T) {
		t.Parallel()
		tb := setupBatcher(t, 1)
		ctx := t.Context()
		held, release := tb.gate.holdNext(nil)
		defer release()
		go func() { _ = tb.b.do(ctx, redis.NewStatusCmd(ctx, "ping")) }()
		<-held

		cctx, cancel := context.WithCancel(ctx)
		cmd := redis.NewStatusCmd(cctx, "set", tb.prefix+"cancelled", "x")
		errc := make(chan error, 1)
		go func() { errc <- tb.b.do(cctx, cmd) }()
		waitQueued(t, tb.b, 1)
		cancel()
		require.ErrorIs(t, <-errc, context.Canceled, "returns while the pipeline ahead is still held")
		release()
		require.Eventually(t, func() bool { return tb.b.queue.InFlight() == 0 }, 5*time.Second, time.Millisecond)
		require.Equal(t, int64(1), tb.gate.pipelines.Load(), "no pipeline for the cancelled command")
		n, err := tb.rdb.Exists(ctx, tb.prefix+"cancelled").Result()
		require.NoError(t, err)
		require.Zero(t, n)
		require.ErrorIs(t, cmd.Err(), context.Canceled, "the dropped command reads as failed, not as done")
	})

	t.Run("a caller whose deadline passes in flight returns at once", func(t *testing.T) {
		t.Parallel()
		tb := setupBatcher(t, 1)
		held, release := tb.gate.holdNext(nil)
		defer release()
		dctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		errc := make(chan error, 1)
		go func() { errc <- tb.b.do(dctx, redis.NewStatusCmd(dctx, "ping")) }()
		<-held
		require.ErrorIs(t, <-errc, context.DeadlineExceeded)
	})

	t.Run("the pipeline carries its caller's context values, not its deadline", func(t *testing.T) {
		t.Parallel()
		tb := setupBatcher(t, 1)
		ctx, cancel := context.WithTimeout(context.WithValue(t.Context(), traceKey{}, "span-1"), time.Minute)
		defer cancel()
		require.NoError(t, tb.b.do(ctx, redis.NewStatusCmd(ctx, "ping")))
		tb.gate.mu.Lock()
		defer tb.gate.mu.Unlock()
		require.Equal(t, "span-1", tb.gate.value, "the request's span is the pipeline's parent")
		require.False(t, tb.gate.deadline, "one caller's deadline does not bound the others' commands")
	})

	t.Run("batches are capped", func(t *testing.T) {
		t.Parallel()
		tb := setupBatcher(t, 1)
		tb.b = newBatcher(tb.rdb, 1, 10)
		ctx := t.Context()
		held, release := tb.gate.holdNext(nil)
		go func() { _ = tb.b.do(ctx, redis.NewStatusCmd(ctx, "ping")) }()
		<-held
		var wg sync.WaitGroup
		for range 25 {
			wg.Go(func() { require.NoError(t, tb.b.do(ctx, redis.NewStatusCmd(ctx, "ping"))) })
		}
		waitQueued(t, tb.b, 25)
		release()
		wg.Wait()
		require.Equal(t, int64(4), tb.gate.pipelines.Load(), "1 + 10 + 10 + 5")
	})
}

func TestRedisStoreBatched(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { _ = rdb.Close() })
	kr := testKeyring(t)
	prefix := "idembatch:" + rand.Text() + ":"
	store, err := NewRedisStore(rdb, RedisOptions{Prefix: prefix, Service: "svc", Keys: kr})
	require.NoError(t, err)
	t.Cleanup(func() {
		keys, err := rdb.Keys(context.Background(), prefix+"*").Result()
		require.NoError(t, err)
		if len(keys) > 0 {
			require.NoError(t, rdb.Del(context.Background(), keys...).Err())
		}
	})

	t.Run("concurrent claims of one key: exactly one wins", func(t *testing.T) {
		const callers = 64
		var wg sync.WaitGroup
		var won atomic.Int64
		fp := []byte("fingerprint")
		for range callers {
			wg.Go(func() {
				rec, err := store.Claim(t.Context(), "contended", NewOwner(), fp, time.Minute)
				if !assertNoError(t, err) {
					return
				}
				if rec == nil {
					won.Add(1)
					return
				}
				if rec.State != InProgress {
					t.Errorf("loser saw state %v, want in progress", rec.State)
				}
			})
		}
		wg.Wait()
		require.Equal(t, int64(1), won.Load())
	})

	t.Run("a script Redis does not hold is loaded by EVAL", func(t *testing.T) {
		// A script never sent before: its EVALSHA finds no script.
		script := redis.NewScript("-- " + rand.Text() + "\nreturn tonumber(ARGV[1]) + 1")
		n, err := store.run(t.Context(), script, prefix+"unused", 41)
		require.NoError(t, err)
		require.Equal(t, int64(42), n)
	})

	t.Run("negative batching options are refused", func(t *testing.T) {
		_, err := NewRedisStore(rdb, RedisOptions{Service: "svc", Keys: kr, MaxPipelines: -1})
		require.Error(t, err)
	})
}

func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

// testKeyring is a keyring of one fresh key.
func testKeyring(t *testing.T) *keyring.Keyring {
	t.Helper()
	kr, err := keyring.New("k1", map[string][]byte{"k1": []byte((rand.Text() + rand.Text())[:keyring.KeySize])})
	require.NoError(t, err)
	return kr
}
