package main

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
)

// benchClients is the number of concurrent gRPC callers (RunParallel
// goroutines = benchClients; b.SetParallelism multiplies GOMAXPROCS).
const benchClients = 16

func parallelism() int { return max(1, benchClients/runtimeProcs()) }

// BenchmarkProcessPayment measures captured payments per second through the
// whole server: gRPC with the real interceptor chain (otel, metrics,
// logging, recovery, caller, idempotency on Redis) and a business row plus
// an outbox row committed in PostgreSQL per call, with the default info-level
// call log. Every call is a new order
// with a new idempotency key.
func BenchmarkProcessPayment(b *testing.B) {
	s := startService(b, nil)
	amount := &commonv1.Money{CurrencyCode: "EUR", AmountMinor: 1234}
	runParallel(b, "payments/s", func(ctx context.Context) error {
		_, err := s.client.ProcessPayment(keyed(ctx), &paymentv1.ProcessPaymentRequest{
			OrderId: uuid.NewString(), Amount: amount, PaymentMethod: "tok_visa"})
		return err
	})
}

// runParallel runs call b.N times from benchClients goroutines, allocations
// reported, and reports the calls per second as unit. A call's error
// fails the benchmark and ends its goroutine.
func runParallel(b *testing.B, unit string, call func(ctx context.Context) error) {
	b.SetParallelism(parallelism())
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if err := call(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
}

// BenchmarkRefundPayment measures the optimistic-lock refund path through
// gRPC: read, version-checked UPDATE plus outbox row, retry on conflict.
// "uncontended" refunds a different captured payment per call;
// "contended-4" sends 4 concurrent refunds per payment, so 3 of every 4
// lose the conditional update, re-read and return the refunded payment.
func BenchmarkRefundPayment(b *testing.B) {
	for _, perPayment := range []int{1, 4} {
		name := "uncontended"
		if perPayment > 1 {
			name = fmt.Sprintf("contended-%d", perPayment)
		}
		b.Run(name, func(b *testing.B) {
			s := startService(b, nil)
			ids := capturedPayments(b, s, b.N/perPayment+1)
			var next atomic.Int64
			runParallel(b, "refunds/s", func(ctx context.Context) error {
				i := int(next.Add(1)-1) / perPayment
				resp, err := s.client.RefundPayment(keyed(ctx), &paymentv1.RefundPaymentRequest{PaymentId: ids[i]})
				if err != nil {
					return err
				}
				if resp.GetPayment().GetStatus() != paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
					return fmt.Errorf("payment %s: status %v", ids[i], resp.GetPayment().GetStatus())
				}
				return nil
			})
		})
	}
}

// capturedPayments inserts n CAPTURED payments straight into the database
// (setup, not measured) and returns their ids.
func capturedPayments(b *testing.B, s *service, n int) []string {
	b.Helper()
	rows, err := s.pool.Query(context.Background(), `
		INSERT INTO payments (id, order_id, currency_code, amount_minor, status, payment_method)
		SELECT gen_random_uuid(), gen_random_uuid(), 'EUR', 1234, 'CAPTURED', 'tok_visa'
		FROM generate_series(1, $1::int)
		RETURNING id::text`, n)
	require.NoError(b, err)
	defer rows.Close()
	ids := make([]string, 0, n)
	for rows.Next() {
		var id string
		require.NoError(b, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(b, rows.Err())
	return ids
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
