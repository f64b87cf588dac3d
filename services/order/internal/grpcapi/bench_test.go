package grpcapi_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkPlaceOrder measures PlaceOrder throughput end to end: a real gRPC
// client and server with the production interceptor chain (metrics, logging,
// recovery, mTLS and token authentication, idempotency on real Redis), the catalog read over gRPC
// from a fake inventory neighbour, and the order + outbox transaction on
// real PostgreSQL. Every call has a fresh idempotency key, so each one is a
// new order. It reports orders/s.
//
//	go test -run '^$' -bench BenchmarkPlaceOrder -count 5 ./internal/grpcapi/
func BenchmarkPlaceOrder(b *testing.B) {
	bundle := setup(b)
	req := placeRequest()
	// Enough calls in flight to keep PostgreSQL busy on a small machine:
	// the work is I/O bound, not CPU bound.
	b.SetParallelism(16)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bundle.client.PlaceOrder(bundle.withKey(newKey()), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "orders/s")
	require.Equal(b, b.N, bundle.orders(b))
}
