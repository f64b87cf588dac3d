package postgres_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// BenchmarkReserve measures Repository.Reserve alone (one transaction:
// reservation row, stock update, outbox row), without gRPC and Redis, with
// 32 concurrent callers each reserving one unit for a new order, over many
// SKUs (low contention) or one hot SKU (high contention). It is the
// database-bound ceiling of BenchmarkReserveStock in grpcapi.
//
//	go test -run '^$' -bench Reserve -count 5 ./internal/postgres/
func BenchmarkReserve(b *testing.B) {
	bb := setup(b)
	var run atomic.Int64
	for _, tc := range []struct {
		name string
		skus int
	}{{"low_contention", 256}, {"high_contention", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			skus := make([]string, tc.skus)
			for i := range skus {
				skus[i] = bb.addProduct(b, fmt.Sprintf("B-%d-%04d", run.Add(1), i), 1_000_000_000)
			}
			ctx := context.Background()
			var next atomic.Int64
			b.SetParallelism(max(1, 32/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					sku := skus[int(next.Add(1))%len(skus)]
					req, err := inventory.NewReserveRequest(newOrderID(), []inventory.Item{{SKU: sku, Quantity: 1}})
					if err != nil {
						b.Error(err)
						return
					}
					if _, _, err := bb.repo.Reserve(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reserves/s")
		})
	}
}
