package idempotency_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/idempotency"
)

// benchCallers is how many requests BenchmarkCheck keeps in flight: a
// service under load, whose guarded calls share the store's pipelines.
const benchCallers = 64

// BenchmarkCheck measures the interceptor against the real Redis, without
// the gRPC transport, with benchCallers concurrent callers:
// "claim_complete" is a first call (claim, handler, complete: two scripts),
// "replay" a retry of a completed call (one script). It reports checks/s
// and each call's latency (p50, p99).
func BenchmarkCheck(b *testing.B) {
	benchCheck(b, false, benchCallers)
}

// BenchmarkCheckPaths compares the store's scripts pipelined with those of
// concurrent callers (path=batched, the production path) with each script
// in its own round trip (path=direct, the store before batching), at
// several numbers of callers, in one run.
func BenchmarkCheckPaths(b *testing.B) {
	for _, path := range []string{"direct", "batched"} {
		for _, callers := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("path=%s/callers=%d", path, callers), func(b *testing.B) {
				benchCheck(b, path == "direct", callers)
			})
		}
	}
}

func benchCheck(b *testing.B, direct bool, callers int) {
	rdb, prefix := newRedis(b)
	store := newStore(b, rdb, prefix)
	if direct {
		idempotency.Unbatched(store)
	}
	g, err := idempotency.New(store, policies, idempotency.Options{TTL: 10 * time.Minute}, prometheus.NewRegistry(), nil)
	require.NoError(b, err)
	intercept := g.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: methodDo}
	req := wrapperspb.String("place order 42 for customer 7")
	handler := func(context.Context, any) (any, error) { return wrapperspb.String("order 42 placed"), nil }
	incoming := func(key string) context.Context {
		ctx := grpc.NewContextWithServerTransportStream(caller.With(context.Background(), caller.Identity{User: "bench"}), headerSink{})
		return metadata.NewIncomingContext(ctx, metadata.Pairs(idempotency.MetadataKey, key))
	}

	b.Run("claim_complete", func(b *testing.B) {
		// A fresh key space per run: b.Run calls this several times.
		keyPrefix := rand.Text() + "-"
		var seq atomic.Int64
		runCallers(b, callers, func() error {
			_, err := intercept(incoming(keyPrefix+strconv.FormatInt(seq.Add(1), 10)), req, info, handler)
			return err
		})
	})
	b.Run("replay", func(b *testing.B) {
		ctx := incoming("replayed-" + rand.Text())
		_, err := intercept(ctx, req, info, handler)
		require.NoError(b, err)
		runCallers(b, callers, func() error {
			_, err := intercept(ctx, req, info, handler)
			return err
		})
	})
}

// runCallers runs b.N calls from callers goroutines and reports checks/s
// and the calls' latency percentiles.
func runCallers(b *testing.B, callers int, call func() error) {
	b.ReportAllocs()
	var (
		next  atomic.Int64
		wg    sync.WaitGroup
		mu    sync.Mutex
		lats  = make([]time.Duration, 0, b.N)
		limit = int64(b.N)
	)
	b.ResetTimer()
	for range callers {
		wg.Go(func() {
			own := make([]time.Duration, 0, b.N/callers+1)
			for next.Add(1) <= limit {
				start := time.Now()
				if err := call(); err != nil {
					b.Error(err)
					return
				}
				own = append(own, time.Since(start))
			}
			mu.Lock()
			lats = append(lats, own...)
			mu.Unlock()
		})
	}
	wg.Wait()
	b.StopTimer()
	if len(lats) == 0 {
		return
	}
	slices.Sort(lats)
	pct := func(p float64) float64 {
		return float64(lats[int(p*float64(len(lats)-1))]) / float64(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
}

// headerSink stands in for the server stream that gRPC puts in a handler's
// context, so that the replay header costs what it costs in a server.
type headerSink struct{}

func (headerSink) Method() string               { return methodDo }
func (headerSink) SetHeader(metadata.MD) error  { return nil }
func (headerSink) SendHeader(metadata.MD) error { return nil }
func (headerSink) SetTrailer(metadata.MD) error { return nil }
