package outbox_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/google/uuid"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/outbox"
)

// BenchmarkAppend measures a whole business transaction as a service runs it:
// BEGIN, insert the business row, Append n events (each for its own
// aggregate, so lanes spread), COMMIT — on one connection, so one
// transaction at a time. end=rollback
// runs the same transaction but rolls it back: without the commit's WAL
// flush, it isolates the cost of the statements themselves.
func BenchmarkAppend(b *testing.B) {
	for _, end := range []string{"commit", "rollback"} {
		for _, n := range []int{1, 3, 100} {
			benchmarkAppend(b, end, n)
		}
	}
}

func benchmarkAppend(b *testing.B, end string, n int) {
	b.Run(fmt.Sprintf("end=%s/events=%d", end, n), func(b *testing.B) {
		ctx := context.Background()
		conn := connect(b)
		// Start every case from an empty table so that index size does
		// not favour whichever case runs first.
		if _, err := conn.Exec(ctx, "TRUNCATE outbox, orders"); err != nil {
			b.Fatal(err)
		}
		w, err := outbox.NewWriter(nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		run := uuid.NewString()
		events := make([]outbox.Event, n)
		for i := range events {
			events[i] = orderEvent(run+"-"+strconv.Itoa(i), 1, event.OrderCreated, "customer-42 sku-1 x2")
		}

		i := 0
		for b.Loop() {
			i++
			tx, err := conn.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO orders (id, version) VALUES ($1, 1)`, run+"/"+strconv.Itoa(i)); err != nil {
				b.Fatal(err)
			}
			if err := w.Append(ctx, tx, events...); err != nil {
				b.Fatal(err)
			}
			if end == "commit" {
				err = tx.Commit(ctx)
			} else {
				err = tx.Rollback(ctx)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "events/s")
	})
}
