package idempotency_test

import (
	"context"
	"crypto/rand"
	"strconv"
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

// BenchmarkCheck measures the interceptor against the real Redis, without
// the gRPC transport: "claim_complete" is a first call (claim, handler,
// complete: two EVALSHA round trips), "replay" a retry of a completed call
// (one EVALSHA). Calls run from 8 goroutines per CPU so that Redis, not the
// round-trip latency of one goroutine, is the limit.
func BenchmarkCheck(b *testing.B) {
	rdb, prefix := newRedis(b)
	store := newStore(b, rdb, prefix)
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

	run := func(b *testing.B, ctxFor func() context.Context) {
		b.SetParallelism(8)
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := intercept(ctxFor(), req, info, handler); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "checks/s")
	}

	b.Run("claim_complete", func(b *testing.B) {
		// A fresh key space per run: b.Run calls this several times.
		keyPrefix := rand.Text() + "-"
		var seq atomic.Int64
		run(b, func() context.Context { return incoming(keyPrefix + strconv.FormatInt(seq.Add(1), 10)) })
	})
	b.Run("replay", func(b *testing.B) {
		ctx := incoming("replayed-" + rand.Text())
		_, err := intercept(ctx, req, info, handler)
		require.NoError(b, err)
		run(b, func() context.Context { return ctx })
	})
}

// headerSink stands in for the server stream that gRPC puts in a handler's
// context, so that the replay header costs what it costs in a server.
type headerSink struct{}

func (headerSink) Method() string               { return methodDo }
func (headerSink) SetHeader(metadata.MD) error  { return nil }
func (headerSink) SendHeader(metadata.MD) error { return nil }
func (headerSink) SetTrailer(metadata.MD) error { return nil }
