package grpcapi_test

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/servicetest"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
)

// contentionMode is how the service treats hot SKUs: "adaptive" (the
// default, as run.go wires it) or "off" (every write in a transaction of
// its own, as before optlock.Contention). Compare them side by side:
//
//	go test -run '^$' -bench 'ReserveStock|AdjustStock' -count 5 ./internal/grpcapi/ -inventory.contention=off
var contentionMode = flag.String("inventory.contention", "adaptive", `hot SKUs: "adaptive" or "off"`)

// benchClients is the number of concurrent clients of every benchmark.
const benchClients = 32

// lowContentionSKUs is how many SKUs the low-contention runs spread over:
// more than benchClients, so that two clients rarely want one row.
const lowContentionSKUs = 256

// BenchmarkReserveStock measures ReserveStock calls per second through the
// whole stack (gRPC, idempotency guard on Redis, one PostgreSQL transaction
// with the outbox insert), each call a new order of one unit, with
// benchClients concurrent clients. low_contention spreads the orders over
// many SKUs; high_contention puts every order on one hot SKU, whose row
// lock serializes the transactions. Stock is ample: every call reserves.
// The calls act for one customer, so the caller reuses its on-behalf-of
// assertion (token.Signer) and the server remembers it verified;
// high_contention_new_users acts for a customer never seen before on each
// call, as in a flash sale of one product, and signs and verifies each
// assertion anew.
//
//	go test -run '^$' -bench 'ReserveStock|AdjustStock' -count 5 ./internal/grpcapi/
func BenchmarkReserveStock(b *testing.B) {
	// One stack for every run: the benchmark function runs several times
	// with growing b.N, and a database (and a pool) per run would pile up.
	bb := setup(b)
	for _, tc := range []struct {
		name     string
		skus     int
		newUsers bool
	}{{"low_contention", lowContentionSKUs, false}, {"high_contention", 1, false}, {"high_contention_new_users", 1, true}} {
		b.Run(tc.name, func(b *testing.B) {
			skus := make([]string, tc.skus)
			for i := range skus {
				skus[i] = bb.addProduct(b, fmt.Sprintf("BENCH-%d-%04d", benchRun.Add(1), i), 1_000_000_000)
			}
			ctx := context.Background()
			var (
				next atomic.Int64
				lat  latencies
			)
			b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					sku := skus[int(next.Add(1))%len(skus)]
					user := customer
					if tc.newUsers {
						user = "shopper-" + newKey()
					}
					callCtx := withKeyFor(ctx, newKey(), user)
					start := time.Now()
					resp, err := bb.client.ReserveStock(callCtx, &inventoryv1.ReserveStockRequest{
						OrderId: newOrderID(), Items: items(sku, 1),
					})
					if err != nil {
						b.Error(err)
						return
					}
					if resp.GetReservation().GetStatus() != inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED {
						b.Errorf("status %v", resp.GetReservation().GetStatus())
						return
					}
					lat.add(time.Since(start))
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reserves/s")
			b.ReportMetric(lat.quantile(0.99).Seconds()*1000, "p99-ms")
		})
	}
}

// BenchmarkAdjustStock measures AdjustStock updates per second, each
// client adding one unit at a time by delta (no version token: the server
// picks how to write, see app.AddStock), with benchClients concurrent
// clients. low_contention gives each client its own SKU; high_contention
// puts every client on one SKU. conflicts/update is how many version
// conflicts the server met (optimistic_lock_conflicts_total) per update;
// every run checks that no update was lost (the SKU ends at its start plus
// every delta, with one version per update).
//
// high_contention_versioned is the other form: each client sets the
// available units with the version token of its last response, and on a
// conflict (Aborted) reads the SKU again and retries with jittered backoff
// (optlock.Retry). A stale token must conflict, so on one hot SKU most
// attempts lose, whatever the server does.
func BenchmarkAdjustStock(b *testing.B) {
	bb := setup(b)
	for _, tc := range []struct {
		name      string
		skus      int
		versioned bool
	}{{"low_contention", benchClients, false}, {"high_contention", 1, false}, {"high_contention_versioned", 1, true}} {
		b.Run(tc.name, func(b *testing.B) {
			skus := make([]string, tc.skus)
			for i := range skus {
				skus[i] = bb.addProduct(b, fmt.Sprintf("ADJ-%d-%04d", benchRun.Add(1), i), 1000)
			}
			ctx := context.Background()
			conflictsBefore := servicetest.MetricSum(b, bb.reg, "optimistic_lock_conflicts_total")
			var (
				worker        atomic.Int64
				clientRetries atomic.Int64
				lat           latencies
			)
			b.SetParallelism(max(1, benchClients/runtime.GOMAXPROCS(0)))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				sku := skus[int(worker.Add(1))%len(skus)]
				policy := optlock.Policy{MaxAttempts: 1000, Backoff: backoff.Policy{Min: 200 * time.Microsecond, Max: 5 * time.Millisecond, Jitter: backoff.FullJitter}}
				if !tc.versioned {
					one := int64(1)
					for pb.Next() {
						start := time.Now()
						// Aborted only if the server's own retries ran out
						// (-inventory.contention=off): the same key again.
						key := newKey()
						err := optlock.Retry(ctx, policy, nil, "product", func(ctx context.Context) error {
							_, err := bb.user.AdjustStock(bb.asAdmin(ctx, key), &inventoryv1.AdjustStockRequest{
								Sku: sku, Delta: &one, Reason: "bench",
							})
							if status.Code(err) == codes.Aborted {
								return optlock.ErrConflict
							}
							return err
						})
						if err != nil {
							b.Error(err)
							return
						}
						lat.add(time.Since(start))
					}
					return
				}
				token := ""
				read := func() error {
					resp, err := bb.client.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: sku})
					token = resp.GetProduct().GetVersionToken()
					return err
				}
				if err := read(); err != nil {
					b.Error(err)
					return
				}
				for n := int64(0); pb.Next(); n++ {
					start := time.Now()
					err := optlock.Retry(ctx, policy, nil, "product", func(ctx context.Context) error {
						resp, err := bb.user.AdjustStock(bb.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{
							Sku: sku, Available: 1000 + n%100, VersionToken: token,
						})
						if status.Code(err) == codes.Aborted {
							clientRetries.Add(1)
							if err := read(); err != nil {
								return err
							}
							return optlock.ErrConflict
						}
						token = resp.GetProduct().GetVersionToken()
						return err
					})
					if err != nil {
						b.Error(err)
						return
					}
					lat.add(time.Since(start))
				}
			})
			b.StopTimer()
			conflicts := servicetest.MetricSum(b, bb.reg, "optimistic_lock_conflicts_total") - conflictsBefore
			if !tc.versioned {
				// No lost update: every delta is in the stock, one version each.
				var available, version int64
				for _, sku := range skus {
					var a, v int64
					require.NoError(b, bb.pool.QueryRow(ctx, `SELECT available, version FROM products WHERE sku = $1`, sku).Scan(&a, &v))
					available, version = available+a-1000, version+v-1
				}
				require.Equal(b, int64(b.N), available, "sum of deltas")
				require.Equal(b, int64(b.N), version, "one version per update")
			} else {
				conflicts = float64(clientRetries.Load())
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
			b.ReportMetric(conflicts/float64(b.N), "conflicts/update")
			b.ReportMetric(lat.quantile(0.99).Seconds()*1000, "p99-ms")
		})
	}
}

// benchRun makes the SKUs of every benchmark run distinct.
var benchRun atomic.Int64

// latencies collects durations from concurrent clients.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) quantile(q float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	slices.Sort(l.d)
	return l.d[min(len(l.d)-1, int(q*float64(len(l.d))))]
}
